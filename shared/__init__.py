"""The library the four components share: SageMaker runtime context, data, models, drift, attribution.

Nothing here imports a component.
"""
