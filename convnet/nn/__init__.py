"""The NumPy network: the engine's operations, layers, Sequential models, optimizers and the zoo."""
