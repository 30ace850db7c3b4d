"""Heatmap PNGs a person can read: original | attribution | overlay, side by side.

The attribution panel uses a diverging colour map centred on zero (red adds to the explained class,
blue speaks against it), clipped at the 99th percentile of |attribution| so one extreme pixel does
not wash the rest out. The overlay shows where the absolute evidence lies on a grey copy of the image.
Small images are shown with nearest-neighbour scaling, so pixels stay pixels.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np

from shared.atomic import write_atomic
from shared.attribution.maps import attribution_map
from shared.plotting import pyplot

CLIP_PERCENTILE = 99.0
PANEL_INCHES = 3.0
DPI = 80


def symmetric_limit(m: np.ndarray) -> float:
    limit = float(np.percentile(np.abs(m), CLIP_PERCENTILE)) if m.size else 0.0
    return limit if limit > 0 else float(np.abs(m).max()) or 1.0


class _HeatmapFigure:
    """One three-panel figure, redrawn with each image's data: building and laying out a figure
    costs most of a PNG's time, and a job draws dozens of the same shape."""

    def __init__(self, shape: tuple[int, int]) -> None:
        plt = pyplot()
        blank = np.zeros(shape, np.float32)
        self.fig, axes = plt.subplots(1, 3, figsize=(3 * PANEL_INCHES, PANEL_INCHES + 0.6))
        self.image = axes[0].imshow(np.zeros((*shape, 3), np.uint8), interpolation="nearest")
        self.signed = axes[1].imshow(blank, cmap="RdBu_r", interpolation="nearest")
        axes[1].set_title("attribution (red: for, blue: against)")
        self.fig.colorbar(self.signed, ax=axes[1], fraction=0.046, pad=0.04)
        self.grey = axes[2].imshow(blank, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        self.magnitude = axes[2].imshow(blank, cmap="inferno", alpha=0.6, interpolation="nearest")
        axes[2].set_title("overlay |attribution|")
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
        self.image_axes = axes[0]
        self.title = self.fig.suptitle("title", fontsize=10)
        self.image_axes.set_title("original")
        self.fig.tight_layout()

    def draw(self, image: np.ndarray, m: np.ndarray, title: str, image_title: str) -> None:
        limit = symmetric_limit(m)
        self.image.set_data(image)
        self.signed.set_data(m)
        self.signed.set_clim(-limit, limit)
        self.grey.set_data(np.asarray(image, np.float32).mean(axis=-1))
        self.magnitude.set_data(np.abs(m))
        self.magnitude.set_clim(0, limit)
        self.image_axes.set_title(image_title)
        self.title.set_text(title)

    def save(self, target: Path | io.BytesIO) -> None:
        self.fig.savefig(target, dpi=DPI, format="png")


_figures: dict[tuple[int, int], _HeatmapFigure] = {}  # by image shape, for this process
# A figure is redrawn in place: threads that share the process (the Streamlit app's sessions) take
# turns, so no PNG mixes two images' data.
_drawing = threading.Lock()


def _figure(shape: tuple[int, int]) -> _HeatmapFigure:
    if shape not in _figures:
        _figures[shape] = _HeatmapFigure(shape)
    return _figures[shape]


def save_heatmap(path: Path, image: np.ndarray, values: np.ndarray, title: str,
                 signed_map: np.ndarray | None = None, image_title: str = "original") -> Path:
    """Write the three-panel PNG for uint8 `image` (H x W x 3) and its attributions (H x W x 3).

    `signed_map` (H x W) replaces the channel sum of `values` when given (per-class mean maps).
    """
    m = attribution_map(values) if signed_map is None else np.asarray(signed_map, np.float32)
    with _drawing:
        figure = _figure(m.shape[:2])
        figure.draw(image, m, title, image_title)
        return write_atomic(Path(path), figure.save)


def heatmap_png(image: np.ndarray, values: np.ndarray, title: str) -> bytes:
    """The same three-panel picture as `save_heatmap`, as PNG bytes (for an app to show)."""
    m = attribution_map(values)
    buffer = io.BytesIO()
    with _drawing:
        figure = _figure(m.shape[:2])
        figure.draw(image, m, title, "original")
        figure.save(buffer)
    return buffer.getvalue()
