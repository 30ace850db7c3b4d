"""File names and machine-read contents of the explanations folder.

    summary.json        settings, totals and one record per image (pipelines read this)
    attributions.npz    float16 H x W x 3 per image, keyed as summary.json's `key_rule` says
    index.html          gallery for people; overlays/*.png beside it
    class_means.npz     train mode: float32 H x W mean map per class (keyed like images)
    class_means/*.png   train mode: the same maps drawn over the class's mean image

With several hosts each host's files carry its name (`summary-algo-2.json`, the suite's one rule:
`shared.sagemaker.per_host_name`), so their outputs can share one S3 prefix without overwriting
each other.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from explainability.explain import ImageExplanation
from explainability.gallery import CLASS_MEANS
from shared.attribution import ClassMeanMaps, attribution_key, save_heatmap

SUMMARY = "summary.json"
ATTRIBUTIONS = "attributions.npz"
INDEX = "index.html"
CLASS_MEANS_FILE = "class_means.npz"


def totals(records: list[ImageExplanation], images_in_data: int, seconds: float, *,
           adaptive: bool) -> dict[str, Any]:
    """Headline figures: how many, how many wrong, how well completeness held, at what cost."""
    deltas = np.abs([r.check.delta for r in records]) if records else np.zeros(0)
    errors = [r.check.relative_error for r in records]
    labelled = [r for r in records if r.correct is not None]
    failed = sum(not r.check.completeness_ok for r in records)
    extra = [r.true_class.check for r in records if r.true_class is not None]
    steps = [r.check.steps for r in records]
    return {
        "images_in_data": images_in_data,
        "images_explained": len(records),
        "labelled": len(labelled),
        "misclassified": sum(not r.correct for r in labelled),
        "accuracy": round(sum(bool(r.correct) for r in labelled) / len(labelled), 4) if labelled
        else None,
        "true_class_attributions": len(extra),
        "max_abs_delta": float(deltas.max()) if len(deltas) else 0.0,
        "mean_abs_delta": float(deltas.mean()) if len(deltas) else 0.0,
        "max_relative_error": float(max(errors)) if errors else 0.0,
        "completeness_ok": len(records) - failed,
        "completeness_failed": failed,
        "true_class_completeness_failed": sum(not e.completeness_ok for e in extra),
        "mean_steps": float(np.mean(steps)) if steps else 0.0,
        "most_steps": max(steps, default=0),
        # adaptive steps stop early only when completeness holds: a failure has reached the cap
        "steps_capped": failed if adaptive else None,
        "seconds": round(seconds, 2),
        "seconds_per_image": round(seconds / len(records), 4) if records else None,
    }


def write_class_means(folder: Path, name_of: Callable[[str], str],
                      means: ClassMeanMaps) -> dict[str, Any]:
    """Arrays and PNGs of the per-class mean maps; returns their description for summary.json.

    `name_of` gives a file its per-host name."""
    maps, pictures = means.means(), means.mean_images()
    np.savez_compressed(folder / name_of(CLASS_MEANS_FILE), **{
        attribution_key(name): maps[c].astype(np.float32)
        for c, name in enumerate(means.class_names) if means.counts[c]})
    classes = {}
    for c, name in enumerate(means.class_names):
        entry: dict[str, Any] = {"images": int(means.counts[c])}
        if means.counts[c]:
            png = name_of(f"{CLASS_MEANS}/{c:03d}.png")
            save_heatmap(folder / png, pictures[c], np.zeros((*maps[c].shape, 3)),
                         f"class {name}: mean attribution of {means.counts[c]} images",
                         signed_map=maps[c], image_title="mean image")
            entry.update(key=attribution_key(name), png=png)
        classes[name] = entry
    return {
        "file": name_of(CLASS_MEANS_FILE),
        "what": "per class, the mean over correctly predicted images (or, unlabelled, images"
                " predicted as the class) of the channel-summed attribution map for that class,"
                " each image's map first scaled to a total absolute attribution of 1",
        "classes": classes,
    }
