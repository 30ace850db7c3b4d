"""Processing component: prepares images for training, monitoring and explanation."""
