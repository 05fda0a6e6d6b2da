"""Demo levels for stdp_bench: a rule (kernel and torch), a torch-only neuron and an
encoder with a kernel step only."""
