"""Heatmap PNGs a person can read: original | attribution | overlay, side by side.

The attribution panel uses a diverging colour map centred on zero (red adds to the explained class,
blue speaks against it), clipped at the 99th percentile of |attribution| so one extreme pixel does
not wash the rest out. The overlay shows where the absolute evidence lies on a grey copy of the image.
Small images are shown with nearest-neighbour scaling, so pixels stay pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.attribution.maps import attribution_map
from shared.plotting import pyplot, save_figure

CLIP_PERCENTILE = 99.0
PANEL_INCHES = 3.0
DPI = 80


def symmetric_limit(m: np.ndarray) -> float:
    limit = float(np.percentile(np.abs(m), CLIP_PERCENTILE)) if m.size else 0.0
    return limit if limit > 0 else float(np.abs(m).max()) or 1.0


def save_heatmap(path: Path, image: np.ndarray, values: np.ndarray, title: str,
                 signed_map: np.ndarray | None = None, image_title: str = "original") -> Path:
    """Write the three-panel PNG for uint8 `image` (H x W x 3) and its attributions (H x W x 3).

    `signed_map` (H x W) replaces the channel sum of `values` when given (per-class mean maps).
    """
    plt = pyplot()
    m = attribution_map(values) if signed_map is None else np.asarray(signed_map, np.float32)
    limit = symmetric_limit(m)
    grey = np.asarray(image, np.float32).mean(axis=-1)
    fig, axes = plt.subplots(1, 3, figsize=(3 * PANEL_INCHES, PANEL_INCHES + 0.6))
    axes[0].imshow(image, interpolation="nearest")
    axes[0].set_title(image_title)
    shown = axes[1].imshow(m, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    axes[1].set_title("attribution (red: for, blue: against)")
    fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.04)
    axes[2].imshow(grey, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    axes[2].imshow(np.abs(m), cmap="inferno", vmin=0, vmax=limit, alpha=0.6,
                   interpolation="nearest")
    axes[2].set_title("overlay |attribution|")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=DPI)
