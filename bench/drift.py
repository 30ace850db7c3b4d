"""Monitoring serve: time to featurise a batch versus time to test it for drift, side by side.

For a few batch sizes against a 2,000-image reference (32x32 digits, the untrained encoder's 32
features, 100 permutations): the encoder's time on the batch, the fast permutation test's time, and
alibi-detect's own `MMDDrift(...).predict()` on the same features with its p-value and MMD² beside
ours (skipped for the largest batch, where it takes minutes). Featurising counts the encoder only
(images already decoded), the stricter side of the comparison.
Target (issue): at 2,000 images the test takes at most as long as featurising (ratio >= 1), with
the same p-values as alibi-detect within permutation noise. Shown two ways: ours replaying
alibi-detect's own seeded permutations (must be equal), and ours over 10 permutation seeds (the
spread any 100-permutation p-value has).
Run: .venv/bin/python bench/drift.py [--sizes 500 2000 8000] [--alibi-max 2000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import print_header, print_result  # noqa: E402
from shared.drift import alibi, permutation_test, untrained_encoder  # noqa: E402
from shared.drift.mmd import splits_from_orders  # noqa: E402
from shared.sample_data import digits_images  # noqa: E402

REFERENCE, PERMUTATIONS = 2000, 100


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


def best_of(rounds: int, work) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(rounds):
        started = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 8000])
    parser.add_argument("--alibi-max", type=int, default=2000,
                        help="largest batch to also run alibi-detect's MMDDrift on (default 2000)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds; the best counts")
    args = parser.parse_args()
    print_header("monitoring serve: featurise vs drift test",
                 f"{REFERENCE} reference vs N test digits at 32x32, untrained conv encoder to 32"
                 f" features, MMD² permutation test with {PERMUTATIONS} permutations, best of"
                 f" {args.rounds}")
    rng = np.random.default_rng(0)
    encoder = untrained_encoder(32, seed=0)
    reference = encoder.encode(digit_stream(REFERENCE, rng))
    started = time.perf_counter()
    sigma = alibi.infer_sigma(reference)  # the first call pays alibi-detect's import
    print(f"bandwidth from the reference (alibi-detect, incl. its import): "
          f"{time.perf_counter() - started:.1f} s, sigma {sigma[0]:.4g}")
    encoder.encode(digit_stream(64, rng))  # warm up
    rows = []
    for size in args.sizes:
        images = digit_stream(size, rng)
        print(f"\n### {size} test images vs {REFERENCE} reference")
        featurise, test = float("inf"), float("inf")
        for _ in range(args.rounds):  # alternate the sides, so a busy moment hits both alike
            seconds, features = best_of(1, lambda images=images: encoder.encode(images))
            featurise = min(featurise, seconds)
            seconds, ours = best_of(1, lambda features=features: permutation_test(
                reference, features, sigma, permutations=PERMUTATIONS))
            test = min(test, seconds)
        ratio = print_result("drift test", test * 1000, "featurise", featurise * 1000, "ms",
                             target=1.0)
        line = (f"ours: p = {ours.p_value:.2f}, MMD² = {ours.distance:.4e},"
                f" threshold {ours.threshold:.4e}")
        theirs = None
        if size <= args.alibi_max:
            alibi_s, theirs = best_of(1, lambda features=features: alibi.mmd_drift_predict(
                reference, features, permutations=PERMUTATIONS, seed=0))
            print(f"alibi-detect MMDDrift.predict: {alibi_s:.1f} s ({alibi_s / test:.0f}x our test)")
            torch.manual_seed(0)  # replay alibi-detect's permutations: randperm(N) each, seeded
            orders = [torch.randperm(REFERENCE + size) for _ in range(PERMUTATIONS)]
            replay = permutation_test(reference, features, sigma,
                                      splits=splits_from_orders(orders, REFERENCE, size))
            seeds = [permutation_test(reference, features, sigma, permutations=PERMUTATIONS,
                                      seed=seed).p_value for seed in range(10)]
            line += (f"\nalibi-detect: p = {theirs['p_value']:.2f}, MMD² = {theirs['distance']:.4e},"
                     f" threshold {theirs['threshold']:.4e}; |MMD² difference| ="
                     f" {abs(theirs['distance'] - ours.distance):.1e}"
                     f"\nours on alibi-detect's permutations: p = {replay.p_value:.2f}, threshold"
                     f" {replay.threshold:.4e}"
                     f"\nours over 10 permutation seeds: p from {min(seeds):.2f} to {max(seeds):.2f}"
                     f" (mean {np.mean(seeds):.3f}): the permutation noise")
        else:
            print("alibi-detect MMDDrift.predict: skipped at this size (--alibi-max)")
        print(line)
        rows.append((size, featurise, test, ratio, ours.p_value,
                     theirs["p_value"] if theirs else None,
                     replay.p_value if theirs else None))
    print("\n| test images | featurise s | test s | featurise/test | p (ours) | p (alibi-detect)"
          " | p (ours, alibi's permutations) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for size, featurise, test, ratio, p_ours, p_alibi, p_replay in rows:
        alibi_p = f"{p_alibi:.2f}" if p_alibi is not None else "-"
        replay_p = f"{p_replay:.2f}" if p_replay is not None else "-"
        print(f"| {size:,} | {featurise:.2f} | {test:.2f} | {ratio:.2f}x | {p_ours:.2f} | {alibi_p}"
              f" | {replay_p} |")


if __name__ == "__main__":
    main()
