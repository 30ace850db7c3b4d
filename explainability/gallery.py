"""The part of the output meant for people: heatmap PNGs of a sample and an index.html linking them.

Misclassified images come first, the most confidently wrong at the top: those are what a reviewer
should look at. The rest of the gallery is filled round-robin over the predicted classes (least
confident first within a class), so every class the model predicts is shown.
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from explainability.explain import ImageExplanation
from shared.attribution import save_heatmap
from shared.data import ProcessedDataset

OVERLAYS = "overlays"
CLASS_MEANS = "class_means"


def pick_gallery(records: list[ImageExplanation], size: int) -> list[int]:
    """Record positions to draw: misclassified first, then a spread over predicted classes."""
    wrong = sorted((i for i, r in enumerate(records) if r.correct is False),
                   key=lambda i: -records[i].probability)
    by_class: dict[str, list[int]] = defaultdict(list)
    for i in sorted((i for i, r in enumerate(records) if r.correct is not False),
                    key=lambda i: records[i].probability):
        by_class[records[i].prediction].append(i)
    spread: list[int] = []
    queues = [by_class[c] for c in sorted(by_class)]
    while any(queues):
        spread.extend(q.pop(0) for q in queues if q)
    return (wrong + spread)[:size]


def caption(record: ImageExplanation) -> str:
    label = f"label {record.label}, " if record.label is not None else ""
    return (f"{record.id}: {label}predicted {record.prediction}"
            f" ({record.probability:.1%}), delta {record.check.delta:+.3g}"
            f" ({record.check.steps} steps)")


def draw_overlays(folder: Path, name_of: Callable[[str], str], records: list[ImageExplanation],
                  chosen: list[int], data: ProcessedDataset, positions: dict[str, int],
                  attributions: Path) -> None:
    """Write one PNG per chosen record and note its file name in the record (`overlay`);
    `name_of` gives a file its per-host name."""
    with np.load(attributions) as stored:
        for n, i in enumerate(chosen):
            record = records[i]
            name = name_of(f"{OVERLAYS}/{n:04d}.png")
            save_heatmap(folder / name, data.image(positions[record.id]),
                         stored[record.key].astype(np.float32), caption(record))
            record.overlay = name


def _card(record: ImageExplanation) -> str:
    e = html.escape
    label = f"<br>label <b>{e(record.label)}</b>" if record.label is not None else ""
    check = "" if record.check.completeness_ok else " <b class=bad>completeness missed</b>"
    overlay = e(record.overlay or "")
    return (f'<figure><a href="{overlay}"><img src="{overlay}"'
            f' alt="{e(record.id)}"></a><figcaption>{e(record.id)}{label}<br>predicted'
            f' <b>{e(record.prediction)}</b> ({record.probability:.1%})<br>delta'
            f' {record.check.delta:+.3g}{check}</figcaption></figure>')


def write_index(path: Path, title: str, totals: dict[str, Any], records: list[ImageExplanation],
                chosen: list[int], class_pngs: list[tuple[str, str]]) -> None:
    """index.html: headline figures, the misclassified, the rest, the class means (train mode)."""
    e = html.escape
    wrong = [records[i] for i in chosen if records[i].correct is False]
    rest = [records[i] for i in chosen if records[i].correct is not False]
    shown = ("images_explained", "misclassified", "max_abs_delta", "max_relative_error",
             "completeness_failed", "mean_steps", "steps_capped", "seconds_per_image")
    headline = ", ".join(f"{k.replace('_', ' ')}: {v:.3g}" if isinstance(v, float) else
                         f"{k.replace('_', ' ')}: {v}" for k, v in totals.items()
                         if k in shown and v is not None)
    parts = [f"<!doctype html><meta charset=utf-8><title>{e(title)}</title>",
             "<style>body{font-family:sans-serif}figure{display:inline-block;margin:6px;"
             "width:420px;vertical-align:top}img{width:100%}.bad{color:#b00}</style>",
             f"<h1>{e(title)}</h1><p>{e(headline)}</p>",
             "<p>Each image: original | attribution (red: evidence for the predicted class, blue:"
             " against) | where the evidence lies. Full data in summary.json.</p>"]
    if wrong:
        parts.append(f"<h2>Misclassified ({len(wrong)} shown)</h2>")
        parts.extend(_card(r) for r in wrong)
    if rest:
        parts.append(f"<h2>Other predictions ({len(rest)} shown)</h2>")
        parts.extend(_card(r) for r in rest)
    if class_pngs:
        parts.append("<h2>Per-class mean attribution (the reference for production)</h2>")
        parts.extend(f'<figure><a href="{e(png)}"><img src="{e(png)}" alt="{e(name)}"></a>'
                     f"<figcaption>class {e(name)}</figcaption></figure>"
                     for name, png in class_pngs)
    path.write_text("\n".join(parts) + "\n")
