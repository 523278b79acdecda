"""The `convnet` command."""
