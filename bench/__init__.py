"""Benchmarks of issue 7 (and issue 4's load test): each goal against a baseline run side by side.

Run ``python -m bench`` from the repository root; it writes ``BENCHMARKS.md``. Not a test suite:
numbers depend on the machine, so every goal is a ratio to a baseline measured in the same run.
"""
