"""Pipelines that chain the components, and the local runner and demo."""
