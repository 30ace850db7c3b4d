"""Drift detection with measured power: how often the MMD detector flags a shifted batch, and how
often it flags a clean one, on the small real data sets of bench/quality_data.py.

Per data set, the default training pipeline trains a model; then, in this process, four detectors
are fitted on the train split's images, one per encoder (shared/drift/encoders.py): the model's
pooled stages (`stages`, the training pipeline's default), its penultimate features (`model`), its
class probabilities (`softmax`), and the seeded untrained encoder (`untrained`, the default
without a model). Batches are drawn without replacement from the held-out validation and test
images, `DRAWS` times per cell, and tested at p = 0.05 with 100 permutations:
- clean (false alarms; `CLEAN_DRAWS` draws);
- the evaluation job's Gaussian noise (sigma 0.08), blur (radius 1 px) and brightness (+0.3)
  (algorithm/robustness.py), JPEG at quality 10, contrast halved and a 15 degree rotation; the
  notes give each one's PSNR against the clean images. The evaluation's JPEG at quality 30 is
  shown too, outside the target: at these sizes it changes little (PSNR about 28 dB), and only
  the stages encoder's image statistics (JPEG blockiness) see it;
- class proportions: the batch drawn from the first half of the classes only (one of two).
Batch sizes are 50, 100 and 500 where the held-out pool holds that many images.
Target: power >= 0.9 for every shift at batches of >= 100 images with the default (`stages`)
detector (at batches of 50 where the pool is smaller than 100: stricter, and still measured), and
a false-alarm count no higher than the 95th percentile of Binomial(draws, 0.05), i.e.
consistent with a false-alarm rate <= the configured p-value.
Run: .venv/bin/python -m bench.drift_power [--quick] [--json PATH]
"""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from algorithm.robustness import CORRUPTIONS, jpeg
from bench.common import Comparison, finish, parser
from bench.quality import run_default_pipeline, trained_model
from bench.quality_data import DATASETS, write
from shared.data.images import fit_square
from shared.drift import MODEL, SOFTMAX, STAGES, DriftDetector, classifier_encoder, untrained_encoder

P_VALUE, PERMUTATIONS = 0.05, 100
SIZES = (50, 100, 500)
DRAWS, CLEAN_DRAWS = 20, 100
POWER_TARGET, MIN_BATCH = 0.9, 100
CONTRAST, ROTATION, JPEG_QUALITY = 0.5, 15, 10
MILD = "jpeg q30 (not in the target)"


def contrast(images: np.ndarray, seed: int = 0) -> np.ndarray:
    mean = images.mean(axis=(1, 2, 3), keepdims=True)
    return np.clip(mean + CONTRAST * (images - mean), 0, 255).astype(np.uint8)


def rotation(images: np.ndarray, seed: int = 0) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(im).rotate(ROTATION, Image.Resampling.BILINEAR))
                     for im in images])


SHIFTS = {name: CORRUPTIONS[name][0] for name in ("gaussian_noise", "blur", "brightness")} | {
    f"jpeg q{JPEG_QUALITY}": partial(jpeg, quality=JPEG_QUALITY), "contrast": contrast, "rotation": rotation,
    MILD: CORRUPTIONS["jpeg"][0]}


def psnr(clean: np.ndarray, changed: np.ndarray) -> float:
    mse = np.mean((clean.astype(np.float64) - changed) ** 2)
    return float(10 * np.log10(255 ** 2 / mse))


def as_model_input(images: list[np.ndarray], size: int) -> np.ndarray:
    """N x size x size x 3 uint8, fitted the way the serving path fits images."""
    return np.stack([np.asarray(fit_square(Image.fromarray(im).convert("RGB"), size))
                     for im in images])


def binomial_quantile(n: int, p: float, q: float = 0.95) -> int:
    """Smallest k with P(Binomial(n, p) <= k) >= q."""
    from math import comb

    total = 0.0
    for k in range(n + 1):
        total += comb(n, k) * p ** k * (1 - p) ** (n - k)
        if total >= q:
            return k
    return n


def rates(detector: DriftDetector, features: np.ndarray, size: int, draws: int,
          rng: np.random.Generator, pool: np.ndarray | None = None) -> int:
    """How many of `draws` batches of `size` rows (from `pool` indices, default all) drift."""
    pool = np.arange(len(features)) if pool is None else pool
    return sum(detector.test_features(features[rng.choice(pool, size, replace=False)]).drift
               for _ in range(draws))


def measure_dataset(name: str, work: Path) -> dict:
    parts = write(name, work / "data")
    run_dir, _ = run_default_pipeline(work / "data", work)
    labels = sorted(parts["train"])
    reference = [im for c in labels for im in parts["train"][c]]
    held = [(im, i) for i, c in enumerate(labels) for part in ("validation", "test")
            for im in parts[part][c]]
    model = trained_model(run_dir)
    encoders = {kind: classifier_encoder(model, kind=kind) for kind in (STAGES, MODEL, SOFTMAX)}
    size = encoders[MODEL].image_size
    encoders["untrained"] = untrained_encoder(size)
    clean = as_model_input([im for im, _ in held], size)
    classes = np.array([c for _, c in held])
    shifted = {shift: change(clean, 0) for shift, change in SHIFTS.items()}
    first_half = np.flatnonzero(classes < max(1, len(labels) // 2))
    result = {"pool": len(clean), "reference": len(reference), "encoders": {},
              "psnr": {shift: psnr(clean, images) for shift, images in shifted.items()}}
    for kind, encoder in encoders.items():
        detector = DriftDetector.fit(encoder, as_model_input(reference, size), p_value=P_VALUE,
                                     permutations=PERMUTATIONS, seed=0)
        rng = np.random.default_rng(0)
        features = {"clean": detector.features(clean)} | {
            shift: detector.features(images) for shift, images in shifted.items()}
        table: dict[str, dict[int, float]] = {}
        for batch in (s for s in SIZES if s <= len(clean)):
            table.setdefault("clean", {})[batch] = rates(detector, features["clean"], batch,
                                                         CLEAN_DRAWS, rng) / CLEAN_DRAWS
            for shift in SHIFTS:
                table.setdefault(shift, {})[batch] = rates(detector, features[shift], batch,
                                                           DRAWS, rng) / DRAWS
            if batch <= len(first_half):
                table.setdefault("class proportions", {})[batch] = rates(
                    detector, features["clean"], batch, DRAWS, rng, first_half) / DRAWS
        result["encoders"][kind] = table
    return result


def comparison(name: str, found: dict) -> Comparison:
    table = found["encoders"][STAGES]
    shifts = [s for s in table if s not in ("clean", MILD)]
    # A pool too small for a batch of MIN_BATCH (faces: 80 images) is judged at its largest batch
    judged = min(MIN_BATCH, max(table["clean"]))
    powers = [table[s][b] for s in shifts for b in table[s] if b >= judged]
    alarms = {b: round(r * CLEAN_DRAWS) for b, r in table["clean"].items()}
    allowed = binomial_quantile(CLEAN_DRAWS, P_VALUE)
    c = Comparison(
        bench="drift_power", title=f"Drift power: {name}, default (stages) detector",
        workload=f"{name}: reference {found['reference']} train images, batches from"
                 f" {found['pool']} held-out images; {DRAWS} draws per shifted cell,"
                 f" {CLEAN_DRAWS} clean; p = {P_VALUE}",
        side_a="required power", a=POWER_TARGET,
        side_b=f"lowest power over the shifts at batches >= {judged}",
        b=min(powers) if powers else 0.0, unit="detection rate", target=1.0,
        checks={f"false alarms <= {allowed} of {CLEAN_DRAWS} at every batch size":
                all(a <= allowed for a in alarms.values())})
    if judged < MIN_BATCH:
        c.notes.append(f"the held-out pool holds {found['pool']} images, too few for a batch of"
                       f" {MIN_BATCH}: judged at batches of {judged}")
    for kind, rows in found["encoders"].items():
        sizes = sorted({b for r in rows.values() for b in r})
        c.notes.append(f"{kind} encoder, detection rate at batch " + "/".join(map(str, sizes))
                       + ": " + "; ".join(f"{shift} " + "/".join(f"{rows[shift][b]:.2f}"
                                                                 if b in rows[shift] else "-"
                                                                 for b in sizes)
                                          for shift in rows))
    c.notes.append("PSNR against the clean images, dB: " + "; ".join(
        f"{shift} {value:.1f}" for shift, value in found["psnr"].items()))
    return c


def main() -> None:
    args = parser(__doc__, "faces only").parse_args()
    names = ["faces"] if args.quick else list(DATASETS)
    with tempfile.TemporaryDirectory() as tmp:
        comparisons = [comparison(n, measure_dataset(n, Path(tmp) / n)) for n in names]
    finish(args, comparisons)


if __name__ == "__main__":
    main()
