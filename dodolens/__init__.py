"""Composition root: settings, the ``dodolens`` CLI, and the embedded runner."""
