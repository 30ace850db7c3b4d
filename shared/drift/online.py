"""Online MMD drift: the last `window` samples against the reference, tested at every update.

The approach of alibi-detect's `MMDDriftOnline`, on this library's kernel and features (so it needs
no alibi-detect at serving time): the statistic is the MMD² between a sliding window of recent
features and the reference, and its threshold is calibrated on the reference itself so that a
window of clean data exceeds it with probability 1/ERT, ERT being the expected run time between
false alarms, counted in updates. The detector's reference is split at random: one part stays the
reference, and windows drawn from the other part stand for clean traffic. Consecutive windows
share all but their newest samples, so alarms on clean data come in short runs; what the threshold
sets is the fraction of alarmed updates. Unlike alibi-detect, the threshold does not vary while
the first window fills: no test is made until it is full.

The statistic is the biased (V-statistic) MMD², the same in calibration and online, so the
threshold is exact for it; it includes each window's self-similarity and is never negative.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
import torch

from shared.drift.mmd import gaussian_kernel

SIMULATED_PER_ERT = 20  # simulated clean windows per unit of ERT: ~20 lie above the threshold
MIN_SIMULATED = 2000
CHUNK = 500  # simulated windows evaluated at once (memory: CHUNK x window²)


@dataclass(frozen=True)
class OnlineState:
    """After an update: the statistic (None until the window is full) and the verdict."""

    statistic: float | None
    threshold: float
    drift: bool
    seen: int  # samples observed since the start
    window: int

    def to_json(self) -> dict:
        return {"drift_statistic": self.statistic, "drift_threshold": self.threshold,
                "drift": self.drift, "drift_seen": self.seen}


class OnlineMMD:
    """A sliding window of features tested against the reference; `update` is thread-safe."""

    def __init__(self, reference: np.ndarray, sigma: list[float], window: int,
                 threshold: float) -> None:
        self.reference = torch.as_tensor(np.ascontiguousarray(reference, dtype=np.float32))
        self.sigma = torch.tensor(sigma, dtype=torch.float32)
        self.window = window
        self.threshold = float(threshold)
        self._self_similarity = float(gaussian_kernel(self.reference, self.reference,
                                                      self.sigma).mean())
        # the window as a ring: the oldest rows are overwritten (MMD² ignores the order)
        self._rows = torch.zeros(window, self.reference.shape[1])
        self._to_reference = torch.zeros(window)  # each row's mean kernel value to the reference
        self._seen = 0
        self._lock = threading.Lock()

    @classmethod
    def calibrate(cls, features: np.ndarray, sigma: list[float], window: int, ert: float,
                  seed: int = 0) -> OnlineMMD:
        """Split the reference features, and set the threshold to the 1 - 1/ert quantile of the
        statistic over windows drawn from the held-out part."""
        n = len(features)
        if window < 2:
            raise ValueError(f"the drift window must hold at least 2 samples, got {window}")
        if ert <= 1:
            raise ValueError(f"the expected run time must be above 1 update, got {ert}")
        held = max(window, n // 2)
        if n - held < 2:
            raise ValueError(f"a window of {window} needs a reference of at least {window + 2}"
                             f" samples (half held out for calibration), got {n}")
        generator = torch.Generator().manual_seed(seed)
        data = torch.as_tensor(np.ascontiguousarray(features, dtype=np.float32))
        order = torch.randperm(n, generator=generator)
        held_out, reference = data[order[:held]], data[order[held:]]
        detector = cls(reference.numpy(), sigma, window, threshold=math.inf)
        k_held = gaussian_kernel(held_out, held_out, detector.sigma)
        k_to_reference = gaussian_kernel(held_out, reference, detector.sigma).mean(dim=1)
        count = max(MIN_SIMULATED, math.ceil(SIMULATED_PER_ERT * ert))
        statistics = []
        for start in range(0, count, CHUNK):
            rows = torch.stack([torch.randperm(held, generator=generator)[:window]
                                for _ in range(min(CHUNK, count - start))])
            within = k_held[rows[:, :, None], rows[:, None, :]].mean(dim=(1, 2))
            statistics.append(within + detector._self_similarity
                              - 2 * k_to_reference[rows].mean(dim=1))
        null = torch.cat(statistics).double()
        detector.threshold = float(torch.quantile(null, 1 - 1 / ert))
        return detector

    def update(self, features: np.ndarray) -> OnlineState:
        """Add samples (N x D, oldest first) to the window and test it once."""
        x = torch.as_tensor(np.ascontiguousarray(features, dtype=np.float32))[-self.window:]
        to_reference = gaussian_kernel(x, self.reference, self.sigma).mean(dim=1)
        with self._lock:
            slots = (self._seen + torch.arange(len(x))) % self.window
            self._rows[slots] = x
            self._to_reference[slots] = to_reference
            self._seen += len(features)
            seen = self._seen
            if seen < self.window:
                return OnlineState(None, self.threshold, False, seen, self.window)
            rows, cross = self._rows.clone(), float(self._to_reference.mean())
        statistic = (float(gaussian_kernel(rows, rows, self.sigma).mean())
                     + self._self_similarity - 2 * cross)
        return OnlineState(statistic, self.threshold, statistic > self.threshold, seen, self.window)
