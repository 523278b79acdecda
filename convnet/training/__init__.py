"""Training runs of the NumPy network: the loop, checkpoints and run folders."""
