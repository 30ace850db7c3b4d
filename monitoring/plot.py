"""The picture beside drift.json: the test statistic against its permutation null, per window.

A person should see at a glance whether the batch drifted and, with windows, where it started: the
observed MMD² is a marker (red when it flags drift), the null is the grey spread it is compared
with, and the dashed line is the threshold at the configured p-value.
"""

from __future__ import annotations

from pathlib import Path

from shared.drift import DriftResult, Window
from shared.plotting import pyplot, save_figure

DRIFT, CLEAN, NULL = "#d62728", "#2ca02c", "#9e9e9e"


def plot_drift(batch: DriftResult, windows: list[Window], path: Path, title: str) -> None:
    plt = pyplot()
    panels = 2 if windows else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 + 5 * (panels - 1) + 0.15 * len(windows), 4.2),
                             squeeze=False)
    ax = axes[0][0]
    colour = DRIFT if batch.drift else CLEAN
    ax.hist(batch.null, bins=30, color=NULL, label=f"permutation null ({len(batch.null)})")
    ax.axvline(batch.threshold, color="black", linestyle="--", label="threshold")
    ax.axvline(batch.distance, color=colour, linewidth=2.5, label="observed MMD²")
    ax.set_xlabel("MMD²")
    ax.set_ylabel("permutations")
    verdict = "DRIFT" if batch.drift else "no drift"
    ax.set_title(f"whole batch: {verdict}, p = {batch.p_value:.3f}\n"
                 f"{batch.n_test} images vs {batch.n_reference} reference", color=colour)
    ax.legend(fontsize=8)
    if windows:
        ax = axes[0][1]
        positions = list(range(len(windows)))
        ax.boxplot([w.result.null for w in windows], positions=positions, widths=0.6,
                   showfliers=False, patch_artist=True,
                   boxprops={"facecolor": NULL, "alpha": 0.5}, medianprops={"color": "black"})
        ax.scatter(positions, [w.result.threshold for w in windows], marker="_", s=300,
                   color="black", label="threshold", zorder=3)
        ax.scatter(positions, [w.result.distance for w in windows], s=50, zorder=4,
                   color=[DRIFT if w.result.drift else CLEAN for w in windows],
                   label="observed MMD² (red: drift)")
        top_threshold = max(abs(w.result.threshold) for w in windows)
        if top_threshold > 0 and max(w.result.distance for w in windows) > 20 * top_threshold:
            # a strong shift would flatten the nulls into a line: keep them visible
            ax.set_yscale("symlog", linthresh=top_threshold)
        step = max(1, len(windows) // 12)
        ax.set_xticks(positions[::step], [f"{w.start}" for w in windows[::step]])
        ax.set_xlabel("window, by first image index (file order)")
        ax.set_ylabel("MMD²")
        drifted = sum(w.result.drift for w in windows)
        ax.set_title(f"{len(windows)} windows of {windows[0].end - windows[0].start} images:"
                     f" {drifted} flag drift\nboxes: each window's permutation null")
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
