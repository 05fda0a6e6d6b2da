"""Reference networks built from stock BindsNET classes (the kernel's parity target)."""

from stdp_bench.networks.stock import build_stock_network, run_stock_presentation

__all__ = ["build_stock_network", "run_stock_presentation"]
