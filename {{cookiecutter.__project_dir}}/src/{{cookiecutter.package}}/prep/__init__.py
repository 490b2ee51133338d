"""Data preparation: the image cache, the folder checks, the synthetic sample set."""
