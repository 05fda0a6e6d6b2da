"""stdp_bench: factorial grids of STDP experiments on BindsNET networks.

Cross encoders, neuron models and learning rules on Diehl & Cook (2015) networks, train
the cells of a grid as independent replicas in a fused event-driven kernel, label neurons
by their responses, and read tidy result tables.
"""

__version__ = "0.1.0"
__all__ = ["load_model"]


def __getattr__(name: str):
    # Imported on first use: importing the package (validation, the registry) must not
    # pull in torch and numba, which the engines need.
    if name == "load_model":
        from stdp_bench.model import load_model

        return load_model
    raise AttributeError(f"module 'stdp_bench' has no attribute {name!r}")
