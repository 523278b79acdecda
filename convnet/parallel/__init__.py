"""Data parallelism over MPI: the shared steps, the job, and starting it."""
