"""The applications over the library: the command line, the page, pictures, benchmarks."""
