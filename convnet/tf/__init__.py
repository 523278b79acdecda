"""The TensorFlow side: task 4's graph, the Keras twin, Keras training and workers."""
