"""Every figure convnet draws."""
