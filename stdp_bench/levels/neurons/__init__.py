"""Levels of the ``neuron`` axis, one module each."""
