"""matplotlib as every report uses it: no display, no math parsing, figures written atomically.

Titles and labels carry class names and image ids, which come from users' folder names: with math
parsing on, a `$` in one of them is read as TeX and can fail the whole plot, so it is off.
"""

from __future__ import annotations

from pathlib import Path

from shared.atomic import write_atomic


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display in a job
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, dpi: int) -> Path:
    """Write `fig` as a PNG at `path` (never half written) and close it."""
    plt = pyplot()
    try:
        return write_atomic(Path(path), lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    finally:
        plt.close(fig)
