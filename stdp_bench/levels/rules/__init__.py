"""Levels of the ``rule`` axis, one module each."""
