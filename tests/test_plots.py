"""Plots print names that come from users' folders; a `$` in one must not be read as TeX."""

import numpy as np
from PIL import Image

from algorithm.evaluation import multiclass_report, plot_confusion_matrix
from monitoring.plot import plot_drift
from shared.attribution import save_heatmap
from shared.drift import DriftResult

HOSTILE = ["$\\frac{1}{", "a_$b^$", "$$", "100% $cost"]


def readable_png(path) -> bool:
    with Image.open(path) as image:
        return image.size[0] > 100


def test_a_confusion_matrix_of_classes_with_dollar_signs_is_drawn(tmp_path):
    labels = np.array([0, 1, 2, 3, 0])
    report = multiclass_report(labels, np.array([0, 1, 2, 0, 1]), HOSTILE)
    plot_confusion_matrix(report, tmp_path / "cm.png", f"accuracy of {HOSTILE[0]}")
    assert readable_png(tmp_path / "cm.png")


def test_a_heatmap_titled_with_an_image_id_holding_dollar_signs_is_drawn(tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    save_heatmap(tmp_path / "h.png", image, np.ones((8, 8, 3)), f"{HOSTILE[1]}/x.png: predicted"
                 f" {HOSTILE[0]}", image_title=HOSTILE[2])
    assert readable_png(tmp_path / "h.png")


def test_a_drift_plot_titled_with_a_folder_holding_dollar_signs_is_drawn(tmp_path):
    result = DriftResult(True, 0.0, 0.5, 0.1, 10, 10, np.linspace(0, 0.2, 50))
    plot_drift(result, [], tmp_path / "d.png", f"drift of {HOSTILE[3]}, {HOSTILE[0]}")
    assert readable_png(tmp_path / "d.png")
