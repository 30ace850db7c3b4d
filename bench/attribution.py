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

Adaptive steps (the default, `--n-steps auto`) against 50 fixed Gauss-Legendre steps, on held-out
digits (32 px) explained by models trained for two epochs on the rest, where 50 steps leave some
images above the completeness tolerance: seconds per image of each side's whole `attribute` call,
alternating, best of --repeats, and each side's completeness errors. Target (issue #22): adaptive
at most 0.5x the time of 50 steps, with completeness at least as good: as many images within the
tolerance, and the worst error within it or no worse than 50 steps' worst (adaptive stops as soon
as an image is within the tolerance, so its mean error is larger by design). The models are
trained here, the way the algorithm's defaults would (AdamW 1e-3, cosine schedule, batch 64);
--model applies to the first comparison only.

Where 50 steps leave more images outside the tolerance than adaptive, that comparison is not at
equal completeness and carries no target. A second row for such a model times adaptive against
the fewest fixed steps (of FIXED_STEPS) that bring as many images within the tolerance as adaptive
does: the time at equal completeness that issue #22 asks for. Same target, 0.5x.
Run: .venv/bin/python -m bench.attribution [--images 40] [--image-size 32] [--model PATH]
     [--device cpu|cuda] [--repeats 5] [--quick]
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.common import Comparison, count_flops, finish, parser, synchronise
from shared.attribution import (
    COMPLETENESS_TOLERANCE,
    Attributions,
    Explainer,
    IGSettings,
    make_baselines,
)
from shared.models import ImageClassifier, default_device, load_artifact
from shared.sample_data import digits_images

N_STEPS = 50
FIXED_STEPS = (100, 200, 400, 800)  # 800 x 40 images of a resnet18 at 32 px: about 35 s on 2 cores
BOUND_BATCHES = (100, 250, 500, 1000, 2000)
ADAPTIVE_MODELS = ("resnet10t", "resnet18")  # --quick: the first only
TRAIN_EPOCHS = 2
TRAIN_IMAGES = 1400  # of the 1,797 digits; the rest are explained
TRAIN_BATCH = 64


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
               logits: np.ndarray) -> tuple[float, Attributions]:
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


def measure(images: int | None, image_size: int, model_path: Path | None, repeats: int | None,
            device: torch.device, models: tuple[str, ...] = ADAPTIVE_MODELS) -> list[Comparison]:
    """The bound comparison, then adaptive vs fixed steps on each of `models`; `repeats` None:
    5 rounds for the bound, 3 for the adaptive comparisons (whose fixed side is 50 full steps
    of a trained resnet18)."""
    digits = split_digits(image_size)
    return [bound_comparison(images, image_size, model_path, repeats or 5, device),
            *(row for name in models for row in adaptive_comparisons(
                train_digits(name, digits, device), digits[1], images, repeats or 3))]


def split_digits(image_size: int) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """((training images, labels), held-out images): a seeded split of the digits."""
    pictures, labels = digits_images(image_size)
    order = np.random.default_rng(0).permutation(len(pictures))
    x, y = np.stack(pictures)[order], np.array([int(t) for t in labels])[order]
    return (x[:TRAIN_IMAGES], y[:TRAIN_IMAGES]), x[TRAIN_IMAGES:]


def train_digits(architecture: str, digits, device: torch.device) -> ImageClassifier:
    """`architecture` trained TRAIN_EPOCHS on the digits' training part: good, not converged."""
    (x, y), _ = digits
    torch.manual_seed(0)
    model = ImageClassifier.create(architecture, [str(d) for d in range(10)], x.shape[1])
    model = model.place(device).train()
    images = torch.from_numpy(x).to(device).permute(0, 3, 1, 2).float()
    labels = torch.from_numpy(y).to(device)
    passes = TRAIN_EPOCHS * -(-len(x) // TRAIN_BATCH)
    optimiser = torch.optim.AdamW(model.parameters(), 1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, passes)
    for _ in range(TRAIN_EPOCHS):
        for batch in torch.randperm(len(x), device=device).split(TRAIN_BATCH):
            loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    return model.eval()


def completeness_note(name: str, result: Attributions) -> str:
    errors = result.relative_error
    return (f"{name}: {int(result.completeness_ok.sum())}/{len(errors)} images within"
            f" tolerance, relative error max {errors.max():.4f} mean {errors.mean():.4f};"
            f" steps per image mean {result.steps.mean():.1f}, max {result.steps.max()}")


def histogram(steps: np.ndarray) -> str:
    """'17: 25 images, 33: 10 images, ...'."""
    values, counts = np.unique(steps, return_counts=True)
    return ", ".join(f"{v}: {c} images" for v, c in zip(values, counts, strict=True))


def adaptive_comparisons(model: ImageClassifier, held_out: np.ndarray, images: int | None,
                         repeats: int) -> list[Comparison]:
    """Adaptive steps vs 50 fixed steps, alternating on the same held-out digits; then adaptive
    vs the fewest fixed steps that match its completeness, where 50 do not."""
    fixed = Explainer(model, IGSettings(n_steps=N_STEPS), device=model.device)
    adaptive = Explainer(model, IGSettings(), device=model.device)
    n = min(len(held_out), images or (400 if fixed.device.type == "cuda" else 40))
    pictures = held_out[:n]
    logits = fixed.predict_logits(pictures)
    targets = logits.argmax(axis=1)
    sides = {"fixed": fixed, "adaptive": adaptive}
    seconds = dict.fromkeys(sides, float("inf"))
    results = {name: ig_seconds(e, pictures, targets, logits)[1] for name, e in sides.items()}
    for _ in range(repeats):  # after the warm-up above; alternating, as in bound_comparison
        for name, explainer in sides.items():
            seconds[name] = min(seconds[name], ig_seconds(explainer, pictures, targets, logits)[0])
    f, a = results["fixed"], results["adaptive"]
    capped = int((~a.completeness_ok).sum())
    # adaptive stops once an image is within tolerance, so "as good" is judged by the tolerance:
    # no fewer images within it, and a worst error within it or no worse than 50 steps' worst
    at_least_as_good = (a.completeness_ok.sum() >= f.completeness_ok.sum() and
                        a.relative_error.max() <= max(f.relative_error.max(),
                                                      COMPLETENESS_TOLERANCE))
    config = model.config
    workload = (f"{config.architecture} trained {TRAIN_EPOCHS} epochs on {TRAIN_IMAGES} digits"
                f" ({config.input_size}x{config.input_size}), {n} held-out digits, predicted"
                f" class, black baseline, CPU threads {torch.get_num_threads()}; best of"
                f" {repeats} alternating rounds")
    notes = [completeness_note(f"{N_STEPS} steps (gausslegendre)", f),
             completeness_note("adaptive (nested trapezoid)", a),
             f"adaptive steps per image: {histogram(a.steps)}",
             f"adaptive images left at the cap ({adaptive.settings.max_steps} steps) above"
             f" tolerance: {capped}",
             f"gradient evaluations, adaptive / fixed: {a.steps.sum() / f.steps.sum():.2f}"
             f" (internal batch {adaptive.batch_size}; tolerance {COMPLETENESS_TOLERANCE:.0%}"
             f" of the logit gap)"]
    # Where 50 steps leave more images outside the tolerance, this row is not at equal
    # completeness: it is shown without a target, and the next row carries it
    unequal = bool(f.completeness_ok.sum() < a.completeness_ok.sum())
    if unequal:
        notes.append(f"no target here: {N_STEPS} steps leave {n - int(f.completeness_ok.sum())}"
                     f" images outside the tolerance and adaptive"
                     f" {n - int(a.completeness_ok.sum())}; the next row times adaptive at equal"
                     " completeness")
    rows = [Comparison("attribution", f"integrated gradients: adaptive steps vs {N_STEPS} fixed"
                       f" steps ({config.architecture}, trained)", workload, f"{N_STEPS} steps",
                       seconds["fixed"] / n, "adaptive", seconds["adaptive"] / n, "s/image",
                       target=None if unequal else 0.5, lower_is_better=True,
                       checks={"completeness at least as good as 50 steps'":
                               bool(at_least_as_good)},
                       device=fixed.device.type, notes=notes)]
    if unequal:
        rows.append(equal_completeness(model, pictures, targets, logits, a, seconds["adaptive"],
                                       workload))
    return rows


def equal_completeness(model: ImageClassifier, pictures: np.ndarray, targets: np.ndarray,
                       logits: np.ndarray, adaptive: Attributions, adaptive_seconds: float,
                       workload: str) -> Comparison:
    """Adaptive's best time against the fewest of FIXED_STEPS that bring as many images within the
    tolerance; the matching count is timed twice and keeps its best, as adaptive keeps its best of
    several rounds (the explainer and model are warm)."""
    n, needed = len(pictures), int(adaptive.completeness_ok.sum())
    notes = []
    for steps in FIXED_STEPS:
        explainer = Explainer(model, IGSettings(n_steps=steps), device=model.device)
        seconds, result = ig_seconds(explainer, pictures, targets, logits)
        notes.append(completeness_note(f"{steps} steps (gausslegendre)", result)
                     + f"; {seconds / n:.4g} s/image")
        if matched := bool(result.completeness_ok.sum() >= needed):
            seconds = min(seconds, ig_seconds(explainer, pictures, targets, logits)[0])
            break
    else:
        notes.append(f"no fixed count up to {steps} steps brings {needed}/{n} images within"
                     f" tolerance; side A is the time at {steps}, a lower bound")
    name = model.config.architecture
    return Comparison("attribution", f"integrated gradients: adaptive vs fixed steps at equal"
                      f" completeness ({name}, trained)", workload + "; the matching fixed count best of 2",
                      f"{steps} steps", seconds / n, "adaptive", adaptive_seconds / n, "s/image",
                      target=0.5, lower_is_better=True,
                      checks={f"fixed steps reach adaptive's {needed}/{n} images within"
                              " tolerance": matched},
                      device=model.device.type, notes=notes)


def bound_comparison(images: int | None, image_size: int, model_path: Path | None, repeats: int,
                     device: torch.device) -> Comparison:
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
    return Comparison("attribution", "integrated gradients: shared.attribution vs one"
                      " forward+backward per point", workload,
                      f"bound (batch {best})", bound / n, "IG", ig / n, "s/image",
                      target=1.25, lower_is_better=True,
                      checks={"completeness holds for every image": ok == n},
                      device=explainer.device.type,
                      flops_per_image=flops_per_image(explainer, points, point_targets),
                      notes=notes)


def main() -> None:
    args_parser = parser(__doc__, f"8 images, one repeat, adaptive steps on {ADAPTIVE_MODELS[0]}"
                                  " only")
    args_parser.add_argument("--images", type=int, default=None,
                             help="images explained per timing (default 40 on CPU, 400 on GPU)")
    args_parser.add_argument("--image-size", type=int, default=32)
    args_parser.add_argument("--model", type=Path, default=None,
                             help="a model artifact (default: resnet10t with seeded random weights)")
    args_parser.add_argument("--repeats", type=int, default=None,
                             help="timed rounds per comparison (default 5; adaptive steps: 3)")
    args_parser.add_argument("--device", choices=["cpu", "cuda"], default=None,
                             help="default: the GPU when there is one, as in the job")
    args = args_parser.parse_args()
    device = torch.device(args.device) if args.device else default_device()
    finish(args, measure(args.images or (8 if args.quick else None), args.image_size, args.model,
                         args.repeats or (1 if args.quick else None), device,
                         ADAPTIVE_MODELS[:1] if args.quick else ADAPTIVE_MODELS))


if __name__ == "__main__":
    main()
