"""Integrated gradients: seconds per image through shared.attribution versus the bare arithmetic bound.

IG with n_steps=50 on N images needs the gradient of the target logit at n_steps x N interpolated
inputs: one forward and one backward pass over each. The bound times exactly that, with nothing
else (inputs already interpolated, parameters frozen as in the explainer, the best of several
batch sizes). The IG side is the explainer's whole `attribute` call: baselines, captum's
interpolation and gradients, the step-weighted sums and the completeness check, at the internal
batch size it chooses itself. As in the job, the logits at the inputs come from the prediction
that picked the targets (made once, outside both timings). Both sides run in the same process,
interleaved, best of --repeats each (the machine may be shared).
Target (explainability issue): IG at most 1.25x the bound, i.e. at least 0.8x its images/s, with
completeness holding for every image.
Run: .venv/bin/python bench/attribution.py [--images 32] [--image-size 32] [--model PATH]
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
from shared.attribution import Explainer, IGSettings, make_baselines  # noqa: E402
from shared.models import ModelConfig, create_model, load_artifact, normalisation  # noqa: E402

N_STEPS = 50
BOUND_BATCHES = (100, 250, 500, 1000, 2000)


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interpolated(explainer: Explainer, images: np.ndarray) -> torch.Tensor:
    """The n_steps x N points IG evaluates (gauss-legendre alphas, black baseline)."""
    pixels = explainer._pixels(images)
    baselines = make_baselines("black", pixels, list(range(len(images))))
    alphas = 0.5 * (1 + np.polynomial.legendre.leggauss(N_STEPS)[0])
    return torch.cat([baselines + float(a) * (pixels - baselines) for a in alphas])


def bound_seconds(explainer: Explainer, points: torch.Tensor, targets: torch.Tensor,
                  batch: int) -> float:
    """One forward and backward pass over every point, `batch` points at a time."""
    synchronise(explainer.device)
    start = time.perf_counter()
    for s in range(0, len(points), batch):
        x = points[s:s + batch].clone().requires_grad_()
        out = explainer.forward(x)
        selected = out.gather(1, targets[s:s + batch, None]).sum()
        torch.autograd.grad(selected, x)
    synchronise(explainer.device)
    return time.perf_counter() - start


def ig_seconds(explainer: Explainer, images: np.ndarray, targets: np.ndarray,
               logits: np.ndarray):
    synchronise(explainer.device)
    start = time.perf_counter()
    result = explainer.attribute(images, targets, np.arange(len(images)), logits)
    synchronise(explainer.device)
    return time.perf_counter() - start, result


def load_model(args: argparse.Namespace) -> tuple[torch.nn.Module, ModelConfig]:
    if args.model:
        return load_artifact(args.model)
    torch.manual_seed(0)
    model = create_model("resnet10t", 10).eval()
    mean, std = normalisation(model)
    return model, ModelConfig("resnet10t", [str(d) for d in range(10)], args.image_size, mean, std)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=None,
                        help="images explained per timing (default 40 on CPU, 400 on GPU)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--model", type=Path, default=None,
                        help="a model artifact (default: resnet10t with seeded random weights)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model, config = load_model(args)
    explainer = Explainer(model, config, IGSettings(n_steps=N_STEPS))
    n = args.images or (400 if explainer.device.type == "cuda" else 40)
    size = config.input_size
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, size, size, 3)).astype(np.uint8)
    logits = explainer.predict_logits(images)  # both sides need the targets; the job has these
    targets = logits.argmax(axis=1)
    points = interpolated(explainer, images)
    point_targets = torch.from_numpy(np.tile(targets, N_STEPS)).to(explainer.device)
    print_header("integrated gradients: shared.attribution vs one forward+backward per point",
                 f"{config.architecture} {size}x{size}, {n} images x {N_STEPS} steps"
                 f" ({len(points)} points), gausslegendre, black baseline, {explainer.device},"
                 f" CPU threads {torch.get_num_threads()}; best of {args.repeats}")
    batches = [b for b in BOUND_BATCHES if b <= len(points)]
    bound_seconds(explainer, points, point_targets, batches[0])  # warm-up
    ig_seconds(explainer, images, targets, logits)
    bound = {b: float("inf") for b in batches}
    ig, result = float("inf"), None
    for _ in range(args.repeats):  # interleaved, so both sides see the same machine
        for b in batches:
            bound[b] = min(bound[b], bound_seconds(explainer, points, point_targets, b))
        seconds, result = ig_seconds(explainer, images, targets, logits)
        ig = min(ig, seconds)
    best = min(bound, key=bound.get)
    print("bound by batch size (s/image): " + ", ".join(f"{b}: {bound[b] / n:.4f}" for b in batches))
    print(f"IG internal batch size (auto): {explainer.batch_size} points,"
          f" {explainer.rows_per_call()} images per captum call")
    print(f"seconds per image: bound {bound[best] / n:.4f} (batch {best}), IG {ig / n:.4f};"
          f" IG / bound = {ig / bound[best]:.2f}x (target <= 1.25x:"
          f" {'met' if ig / bound[best] <= 1.25 else 'NOT met'})")
    ok = int(result.completeness_ok.sum())
    print(f"completeness: {ok}/{n} images within tolerance, max relative error"
          f" {result.relative_error.max():.4f}, max |delta| {np.abs(result.delta).max():.4g}")
    print_result("bound", n / bound[best], "IG", n / ig, "images/s", target=0.8)


if __name__ == "__main__":
    main()
