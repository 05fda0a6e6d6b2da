"""stdp_bench: factorial grids of STDP experiments on BindsNET networks.

Cross encoders, neuron models and learning rules on Diehl & Cook (2015) networks, train
the cells of a grid as independent replicas in a fused event-driven kernel, label neurons
by their responses, and read tidy result tables.
"""

__version__ = "0.1.0"
