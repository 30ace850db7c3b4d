"""Integrated gradients (captum) for the suite's models: baselines, batching, completeness, maps, PNGs.

Used by the explainability component, and meant for the pipelines and serve-time explanations too.
"""

from shared.attribution.adaptive import FIRST_STEPS, MAX_STEPS
from shared.attribution.baselines import gaussian_blur, make_baselines
from shared.attribution.batching import auto_internal_batch_size
from shared.attribution.completeness import COMPLETENESS_FLOOR, COMPLETENESS_TOLERANCE
from shared.attribution.integrated import Attributions, Explainer, IGSettings, explained_function
from shared.attribution.maps import ClassMeanMaps, attribution_map, mass_fraction, normalised_map
from shared.attribution.render import heatmap_png, save_heatmap
from shared.attribution.store import KEY_RULE, NpzWriter, attribution_key, image_id_of

__all__ = [
    "COMPLETENESS_FLOOR",
    "COMPLETENESS_TOLERANCE",
    "FIRST_STEPS",
    "KEY_RULE",
    "MAX_STEPS",
    "Attributions",
    "ClassMeanMaps",
    "Explainer",
    "IGSettings",
    "NpzWriter",
    "attribution_key",
    "attribution_map",
    "auto_internal_batch_size",
    "explained_function",
    "gaussian_blur",
    "heatmap_png",
    "image_id_of",
    "make_baselines",
    "mass_fraction",
    "normalised_map",
    "save_heatmap",
]
