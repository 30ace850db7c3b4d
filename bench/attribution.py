"""Integrated gradients: seconds per image through shared.attribution versus the bare arithmetic bound.

IG with n_steps=50 on N images needs the gradient of the target logit at n_steps x N interpolated
inputs: one forward and one backward pass over each. The bound times exactly that, with nothing
else (inputs already interpolated, parameters frozen as in the explainer, the best of several
batch sizes). The IG side is the explainer's whole `attribute` call: baselines, captum's
interpolation and gradients, the step-weighted sums and the completeness check, at the internal
batch size it chooses itself. As in the job, the logits at the inputs come from the prediction
that picked the targets (made once, outside both timings). Both sides run in the same process,
interleaved, best of --repeats each (the machine may be shared).
Target (explainability issue): IG at most 1.25x the bound's seconds per image, with completeness
holding for every image.
Run: .venv/bin/python -m bench.attribution [--images 40] [--image-size 32] [--model PATH]
     [--device cpu|cuda] [--quick]
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from bench.common import Comparison, count_flops, finish, parser
from shared.attribution import Explainer, IGSettings, make_baselines
from shared.models import ImageClassifier, default_device, load_artifact

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


def load_model(model_path: Path | None, image_size: int) -> ImageClassifier:
    if model_path:
        return load_artifact(model_path)
    torch.manual_seed(0)
    return ImageClassifier.create("resnet10t", [str(d) for d in range(10)], image_size).eval()


def flops_per_image(explainer: Explainer, points: torch.Tensor, targets: torch.Tensor) -> float:
    """What the bound does for one image's N_STEPS points: forward, then input gradients only."""
    def work() -> None:  # .backward(), not autograd.grad: the counter's module hooks need it
        x = points[:N_STEPS].clone().requires_grad_()
        explainer.forward(x).gather(1, targets[:N_STEPS, None]).sum().backward()
    return float(count_flops(work))


def measure(images: int | None, image_size: int, model_path: Path | None, repeats: int,
            device: torch.device) -> list[Comparison]:
    explainer = Explainer(load_model(model_path, image_size), IGSettings(n_steps=N_STEPS),
                          device=device)
    config = explainer.config
    n = images or (400 if explainer.device.type == "cuda" else 40)
    size = config.input_size
    rng = np.random.default_rng(0)
    pictures = rng.integers(0, 256, (n, size, size, 3)).astype(np.uint8)
    logits = explainer.predict_logits(pictures)  # both sides need the targets; the job has these
    targets = logits.argmax(axis=1)
    points = interpolated(explainer, pictures)
    point_targets = torch.from_numpy(np.tile(targets, N_STEPS)).to(explainer.device)
    batches = [b for b in BOUND_BATCHES if b <= len(points)]
    bound_seconds(explainer, points, point_targets, batches[0])  # warm-up
    ig_seconds(explainer, pictures, targets, logits)
    # The bound's best batch size is picked in a pass of its own; then both sides are timed
    # alternately, equally often: more tries for one side would favour it on a busy machine.
    by_batch = {b: bound_seconds(explainer, points, point_targets, b) for b in batches}
    best = min(by_batch, key=by_batch.get)
    bound, ig, result = float("inf"), float("inf"), None
    for _ in range(repeats):
        bound = min(bound, bound_seconds(explainer, points, point_targets, best))
        seconds, result = ig_seconds(explainer, pictures, targets, logits)
        ig = min(ig, seconds)
    ok = int(result.completeness_ok.sum())
    workload = (f"{config.architecture} {size}x{size}, {n} images x {N_STEPS} steps"
                f" ({len(points)} points), gausslegendre, black baseline, CPU threads"
                f" {torch.get_num_threads()}; best of {repeats} alternating rounds")
    notes = ["bound by batch size, selection pass (s/image): "
             + ", ".join(f"{b}: {by_batch[b] / n:.4f}" for b in batches),
             f"IG internal batch size (auto): {explainer.batch_size} points,"
             f" {explainer.rows_per_call()} images per captum call",
             f"completeness: {ok}/{n} images within tolerance, max relative error"
             f" {result.relative_error.max():.4f}, max |delta| {np.abs(result.delta).max():.4g}"]
    return [Comparison("attribution", "integrated gradients: shared.attribution vs one"
                       " forward+backward per point", workload,
                       f"bound (batch {best})", bound / n, "IG", ig / n, "s/image",
                       target=1.25, lower_is_better=True,
                       checks={"completeness holds for every image": ok == n},
                       device=explainer.device.type,
                       flops_per_image=flops_per_image(explainer, points, point_targets),
                       notes=notes)]


def main() -> None:
    args_parser = parser(__doc__, "8 images, one repeat")
    args_parser.add_argument("--images", type=int, default=None,
                             help="images explained per timing (default 40 on CPU, 400 on GPU)")
    args_parser.add_argument("--image-size", type=int, default=32)
    args_parser.add_argument("--model", type=Path, default=None,
                             help="a model artifact (default: resnet10t with seeded random weights)")
    args_parser.add_argument("--repeats", type=int, default=None, help="default 5")
    args_parser.add_argument("--device", choices=["cpu", "cuda"], default=None,
                             help="default: the GPU when there is one, as in the job")
    args = args_parser.parse_args()
    device = torch.device(args.device) if args.device else default_device()
    finish(args, measure(args.images or (8 if args.quick else None), args.image_size, args.model,
                         args.repeats or (1 if args.quick else 5), device))


if __name__ == "__main__":
    main()
