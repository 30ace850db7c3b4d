"""Monitoring serve: time to featurise a batch versus time to test it for drift, side by side.

For a few batch sizes against a 2,000-image reference (32x32 digits, the untrained encoder's 32
features, 100 permutations): the encoder's time on the batch, the fast permutation test's time, and
alibi-detect's own `MMDDrift(...).predict()` on the same features with its p-value and MMD² beside
ours (skipped for the largest batch, where it takes minutes). Featurising counts the encoder only
(images already decoded), the stricter side of the comparison.
Targets: at 2,000 and at 8,000 images the test takes at most a fifth of the featurising time
(ratio >= 5; issue 22), with the same p-values as alibi-detect within permutation noise at 2,000.
Shown two ways: ours replaying alibi-detect's own seeded permutations (must be equal), and ours
over 10 permutation seeds (the spread any 100-permutation p-value has). 500 images: no target.
On a GPU (--device cuda) both sides run there; where alibi-detect is not installed the comparisons
with it are left out.
Run: .venv/bin/python -m bench.drift [--sizes 500 2000 8000] [--alibi-max 2000] [--device cpu|cuda]
     [--quick]
"""

from __future__ import annotations

import time

import numpy as np
import torch

from bench.common import Comparison, finish, parser
from shared.drift import alibi, permutation_test, untrained_encoder
from shared.drift.mmd import median_bandwidth, splits_from_orders
from shared.sample_data import digits_images

PERMUTATIONS = 100
TARGET = 5.0  # featurising time / test time


def digit_stream(count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` distinct 32x32 digits: the 1,797 originals shifted by up to 2 pixels, re-inked."""
    digits = np.stack(digits_images(32)[0])
    picks = digits[rng.integers(0, len(digits), count)]
    shifts = rng.integers(-2, 3, size=(count, 2))
    out = np.empty_like(picks)
    for i, (image, (dy, dx)) in enumerate(zip(picks, shifts, strict=True)):
        out[i] = np.roll(image, (dy, dx), axis=(0, 1))
    ink = rng.uniform(0.85, 1.15, size=(count, 1, 1, 1))
    return (255 - (255 - out.astype(np.float32)) * ink).clip(0, 255).astype(np.uint8)


def best_of(rounds: int, work, device: str = "cpu") -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(rounds):
        started = time.perf_counter()
        result = work()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return best, result


def against_alibi(reference: np.ndarray, features: np.ndarray, sigma, ours, test_s: float):
    """alibi-detect's MMDDrift on the same features: (checks, notes) beside our figures."""
    size = len(features)
    alibi_s, theirs = best_of(1, lambda: alibi.mmd_drift_predict(
        reference, features, permutations=PERMUTATIONS, seed=0))
    torch.manual_seed(0)  # replay alibi-detect's permutations: randperm(N) each, seeded
    orders = [torch.randperm(len(reference) + size) for _ in range(PERMUTATIONS)]
    replay = permutation_test(reference, features, sigma,
                              splits=splits_from_orders(orders, len(reference), size))
    seeds = [permutation_test(reference, features, sigma, permutations=PERMUTATIONS,
                              seed=seed).p_value for seed in range(10)]
    notes = [f"alibi-detect MMDDrift.predict: {alibi_s:.1f} s ({alibi_s / test_s:.0f}x our test)",
             f"alibi-detect: p = {theirs['p_value']:.2f}, MMD² = {theirs['distance']:.4e},"
             f" threshold {theirs['threshold']:.4e}; |MMD² difference| ="
             f" {abs(theirs['distance'] - ours.distance):.1e}",
             f"ours on alibi-detect's permutations: p = {replay.p_value:.2f}, threshold"
             f" {replay.threshold:.4e}",
             f"ours over 10 permutation seeds: p from {min(seeds):.2f} to {max(seeds):.2f}"
             f" (mean {np.mean(seeds):.3f}): the permutation noise"]
    same = bool(np.isclose(replay.p_value, theirs["p_value"]))
    return {"p-value equals alibi-detect's on its permutations": same}, notes


def measure(sizes: list[int], reference_size: int, target_sizes: set[int], alibi_max: int,
            rounds: int, device: str = "cpu") -> list[Comparison]:
    rng = np.random.default_rng(0)
    encoder = untrained_encoder(32, seed=0, device=device)
    reference = encoder.encode(digit_stream(reference_size, rng))
    started = time.perf_counter()
    sigma = median_bandwidth(reference)
    setup = (f"bandwidth from the reference (median rule): {time.perf_counter() - started:.2f} s,"
             f" sigma {sigma[0]:.4g}")
    if not alibi.installed():  # e.g. on a GPU machine set up for the model paths only
        alibi_max = 0
    encoder.encode(digit_stream(64, rng))  # warm up
    results = []
    for size in sizes:
        images = digit_stream(size, rng)
        featurise, test = float("inf"), float("inf")
        for _ in range(rounds):  # alternate the sides, so a busy moment hits both alike
            seconds, features = best_of(1, lambda images=images: encoder.encode(images), device)
            featurise = min(featurise, seconds)
            seconds, ours = best_of(1, lambda features=features: permutation_test(
                reference, features, sigma, permutations=PERMUTATIONS, device=device), device)
            test = min(test, seconds)
        notes = [setup, f"ours: p = {ours.p_value:.2f}, MMD² = {ours.distance:.4e},"
                        f" threshold {ours.threshold:.4e}"]
        checks = {}
        if size <= alibi_max:
            checks, more = against_alibi(reference, features, sigma, ours, test)
            notes += more
        else:
            notes.append("alibi-detect MMDDrift.predict: not run at this size (--alibi-max, or"
                         " alibi-detect not installed)")
        workload = (f"{size:,} test vs {reference_size:,} reference digits at 32x32, untrained conv"
                    f" encoder to 32 features, MMD² permutation test with {PERMUTATIONS}"
                    f" permutations, best of {rounds}")
        results.append(Comparison(
            "drift", f"monitoring serve: featurise vs drift test, {size:,} images", workload,
            "drift test", test * 1000, "featurise", featurise * 1000, "ms",
            target=TARGET if size in target_sizes else None, checks=checks, notes=notes,
            device=device))
    return results


def main() -> None:
    args_parser = parser(__doc__, "300 images against a 300-image reference, one round")
    args_parser.add_argument("--sizes", type=int, nargs="+", default=None, help="default 500 2000 8000")
    args_parser.add_argument("--alibi-max", type=int, default=2000,
                             help="largest batch to also run alibi-detect's MMDDrift on (default 2000)")
    args_parser.add_argument("--rounds", type=int, default=None,
                             help="timed rounds, the best counts (default 5)")
    args_parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = args_parser.parse_args()
    if args.quick:
        finish(args, measure(args.sizes or [300], 300, {300}, args.alibi_max, args.rounds or 1,
                             args.device))
    else:
        finish(args, measure(args.sizes or [500, 2000, 8000], 2000, {2000, 8000}, args.alibi_max,
                             args.rounds or 5, args.device))


if __name__ == "__main__":
    main()
