"""Levels of every axis, one module each, and their registries (no torch, no numba).

See :mod:`stdp_bench.levels.registry` for how levels are found and
:mod:`stdp_bench.levels.spec` for what a level declares.
"""
