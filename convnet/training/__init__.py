"""Training runs: their config and events, the NumPy loop and backend, checkpoints, run folders."""
