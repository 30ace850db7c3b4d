"""Tooling for the images: the lock file, the registry, local runs, the dependency audit."""
