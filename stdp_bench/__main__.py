"""``python -m stdp_bench`` is the ``stdp-bench`` command."""

from stdp_bench.cli import main

main()
