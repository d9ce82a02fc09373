"""Helpers shared by the tests: in-memory media generators."""
