"""The NumPy network: the engine's operations, layers and losses, model specs, Sequential models, optimizers and the zoo."""
