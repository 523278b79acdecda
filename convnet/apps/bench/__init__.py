"""Benchmarks against TensorFlow and Keras."""
