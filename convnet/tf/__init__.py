"""The TensorFlow side: task 4's graph, the Keras twin, their backends and Keras's workers."""
