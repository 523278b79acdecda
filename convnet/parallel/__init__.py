"""Data parallelism over MPI."""
