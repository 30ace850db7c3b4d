"""The monitoring component: MMD data drift on raw images (train: learn the reference, serve: test)."""
