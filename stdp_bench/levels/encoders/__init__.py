"""Levels of the ``encoder`` axis, one module each."""
