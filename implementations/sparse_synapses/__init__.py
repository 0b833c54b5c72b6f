"""Sparse dynamic synapses (Pervasive-AI-Lab/sparse-dynamic-synapses): k-WTA activations and fixed
random weight masks, re-implemented clean-room from `shared/specs/numenta.md`."""
