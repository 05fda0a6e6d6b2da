"""Levels of the ``dataset`` axis, one module per family of files: each declares its
levels (input shape, classes) and its :class:`~stdp_bench.levels.datasets.source.Source`
(where the files lie under the data root, how they are read)."""
