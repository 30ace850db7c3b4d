"""The completeness rule: an image's attributions must add up to the change of the explained logit.

|delta| <= TOLERANCE x max(|F(x) - F(baseline)|, FLOOR), where delta = sum(attributions) -
(F(x) - F(baseline)). The floor is one logit: when input and baseline score almost the same there
is little to explain, and 5% of one logit is a 5% change in the odds, while a purely relative rule
would fail on rounding noise.
"""

from __future__ import annotations

import numpy as np

COMPLETENESS_TOLERANCE = 0.05
COMPLETENESS_FLOOR = 1.0


def relative_error(delta: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """|delta| as a share of the logit gap F(x) - F(baseline) (at least the floor)."""
    return np.abs(delta) / np.maximum(np.abs(gap), COMPLETENESS_FLOOR)
