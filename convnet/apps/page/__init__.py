"""`convnet serve`: the page that shows a network at work."""
