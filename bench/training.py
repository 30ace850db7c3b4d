"""Training throughput: the Lightning job path versus a plain PyTorch loop, side by side.

Same model (resnet10t), same data (the digits at 32x32, from memory-mapped shards), same batch
size, optimiser, threads and precision (the job's default: bf16 autocast on a GPU that has it and
on a CPU with AMX, in channels last on the CPU; else float32); the sides take turns step by step in
one process (a plain step of each after each of Lightning's, bench.training.Turns), so their epochs
span the same stretch of time; the first epoch is a warm-up. Each side shows its best epoch; a ratio
is the median of the epochs' ratios. Target (issue #22): the Lightning path at least 0.97x the
plain loop (issue 4 asked 0.9x). Also the plain loop without each of round 2's levers (centre taps
on 1 x 1 maps, a fused AdamW step; and bf16 autocast, where it is the job's), and the model's
convolutions and linear layers alone at the same batch (bench/layers.py): the ceiling on the
training path's FLOP rate, which BENCHMARKS.md sets against the matmul beside the paths. And each
path's own cost a step, on one linear layer over the 8x8 digits: what Lightning adds, without the
convolutions' run-to-run noise that hides a few milliseconds in the images/s ratio.
Run: .venv/bin/python -m bench.training [--data-copies 2] [--epochs 8] [--device cpu|cuda]
     [--batch-size 64] [--quick]
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn

from algorithm.data import ProcessedDataModule, ShardDataset, collate
from algorithm.hyperparameters import Hyperparameters
from algorithm.module import Classifier
from algorithm.train import channels_last, lightning_precision
from bench.common import Comparison, count_flops, finish, parser, synchronise
from bench.layers import SIDE, describe, flops_note, layers_alone
from shared.data import DatasetWriter, ProcessedDataset
from shared.models import ImageClassifier
from shared.models.centre_tap import CentreTapConv2d
from shared.sample_data import digits_images

ARCH, BATCH = "resnet10t", 64
CEILINGS = 3  # times the layers alone are timed
TINY_SIZE, TINY_COPIES = 8, 8  # the overhead's workload: the digits' own size, ~225 steps an epoch


def make_dataset(folder: Path, copies: int, size: int = 32) -> ProcessedDataset:
    images, labels = digits_images(size)
    writer = DatasetWriter(folder, size, classes=[str(d) for d in range(10)])
    for copy in range(copies):
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            writer.add(image, f"{copy}-{i}", str(i), label)
    writer.commit({})
    return ProcessedDataset(folder)


def new_module(hp: Hyperparameters, device: torch.device, *, centre_taps: bool = True,
               fused: bool = True, tiny: bool = False) -> Classifier:
    """The job's model and optimiser, or either without its #22 round-2 lever: centre taps on
    1 x 1 maps (shared/models/centre_tap.py), a fused AdamW step (algorithm/module.py). `tiny`:
    one linear layer on 8x8 images instead of the network, so a step is mostly the path's own."""
    torch.manual_seed(0)
    size = TINY_SIZE if tiny else 32
    module = Classifier(ImageClassifier.create(ARCH, [str(d) for d in range(10)], size), hp)
    if tiny:
        module.classifier.network = nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, 10))
    if not centre_taps:
        for conv in module.modules():
            if type(conv) is CentreTapConv2d:
                conv.__class__ = nn.Conv2d
    if not fused:
        module.configure_optimizers = lambda: torch.optim.AdamW(
            module.classifier.network.parameters(), lr=hp.learning_rate,
            weight_decay=hp.weight_decay)
    if channels_last(precision(hp, device), device.type):  # as the job (algorithm/train.py)
        module.to(memory_format=torch.channels_last)
    return module.to(device)


def precision(hp: Hyperparameters, device: torch.device) -> str:
    return lightning_precision(hp.precision, device.type == "cuda")


def autocast(hp: Hyperparameters, device: torch.device):
    """What Lightning's mixed precision does around the forward pass, for the plain loop."""
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision(hp, device))
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()


class PlainLoop:
    """The plain PyTorch loop: the same forward (normalise + model), loss and optimiser as the job
    (no schedule: hp), with none of Lightning's machinery; run a step at a time (`Turns`), its own
    time summed per epoch."""

    def __init__(self, data: ProcessedDataset, hp: Hyperparameters, device: torch.device,
                 float32: bool = False, **levers: bool) -> None:
        # float32: without bf16 autocast (and its channels last), where the job would use it
        self.hp = replace(hp, precision="32") if float32 else hp
        self.device = device
        self.module = new_module(self.hp, device, **levers)
        self.optimizer = self.module.configure_optimizers()
        self.loader = torch.utils.data.DataLoader(
            ShardDataset(data), batch_size=hp.batch_size, shuffle=True, collate_fn=collate,
            pin_memory=device.type == "cuda")
        self.seconds = 0.0  # this epoch's so far

    def start_epoch(self) -> None:
        start = time.perf_counter()
        self.module.train()
        self._batches = iter(self.loader)
        self.seconds = time.perf_counter() - start

    def step(self) -> bool:
        """One batch, loading it included; False once the epoch's are done."""
        synchronise(self.device)
        start = time.perf_counter()
        batch = next(self._batches, None)
        if batch is not None:
            images, labels = (t.to(self.device, non_blocking=True) for t in batch)
            with autocast(self.hp, self.device):
                loss = self.module.loss(self.module(images), labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            synchronise(self.device)
        self.seconds += time.perf_counter() - start
        return batch is not None

    def finish_epoch(self) -> float:
        """The epoch's seconds, after any batches Lightning's epoch left (none: the same data)."""
        while self.step():
            pass
        return self.seconds


class Turns(pl.Callback):
    """The sides take turns step by step: after each of Lightning's steps, one step of each plain
    loop (in an order that rotates, so none always follows Lightning). Lightning's epoch is its
    wall time less the plain steps run inside it. A slow spell of the machine, which moved one
    side's epochs by up to 20% within a minute here, then hits every side alike: taking turns
    epoch by epoch, the epochs' ratios still ranged 0.86-1.06x within a run, and the ratio of the
    sides' best epochs read 0.90-1.08x from run to run on the same code."""

    def __init__(self, device: torch.device, loops: dict[str, PlainLoop]) -> None:
        self.device, self.loops = device, loops
        self.times: dict[str, list[float]] = {side: [] for side in ("Lightning", *loops)}

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        synchronise(self.device)
        self._start = time.perf_counter()
        for loop in self.loops.values():
            loop.start_epoch()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        sides = list(self.loops.values())
        turn = batch_idx % len(sides)
        for loop in sides[turn:] + sides[:turn]:
            loop.step()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        synchronise(self.device)
        wall = time.perf_counter() - self._start
        plain = {side: loop.finish_epoch() for side, loop in self.loops.items()}
        self.times["Lightning"].append(wall - sum(plain.values()))
        for side, seconds in plain.items():
            self.times[side].append(seconds)


def epoch_seconds(data: ProcessedDataset, hp: Hyperparameters, device: torch.device, epochs: int,
                  plain_sides: dict[str, dict[str, bool]], tiny: bool = False
                  ) -> dict[str, list[float]]:
    """{side: its epochs but the first (a warm-up)}: the Lightning job path ("Lightning") and each
    plain side ({name: new_module's levers}), taking turns step by step (`Turns`), so every side's
    i-th epoch spans the same stretch of time."""
    module = new_module(hp, torch.device("cpu"), tiny=tiny)  # Lightning moves it, as in the job
    dm = ProcessedDataModule(data, data, batch_size=hp.batch_size, num_workers=0, augment=False)
    turns = Turns(device, {side: PlainLoop(data, hp, device, tiny=tiny, **levers)
                           for side, levers in plain_sides.items()})
    trainer = pl.Trainer(max_epochs=epochs, accelerator="gpu" if device.type == "cuda" else "cpu",
                         devices=1, precision=precision(hp, device), logger=False,
                         enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0, callbacks=[turns])
    trainer.fit(module, datamodule=dm)
    return {side: times[1:] for side, times in turns.times.items()}


def per_epoch(times: dict[str, list[float]], a: str, b: str, *, rate: bool = True) -> list[float]:
    """b / a in each epoch: of images/s (`rate`), or of the time itself."""
    return [(ta / tb if rate else tb / ta) for ta, tb in zip(times[a], times[b], strict=True)]


def print_epochs(times: dict[str, list[float]]) -> None:
    """Every timed epoch: the record behind the best epochs and the epochs' ratios."""
    print("seconds of each timed epoch: " + ", ".join(times))
    for epoch, row in enumerate(zip(*times.values(), strict=True), start=2):
        print(f"  epoch {epoch}: " + "  ".join(f"{t:.3f}" for t in row))


def flops_per_image(data: ProcessedDataset, hp: Hyperparameters, device: torch.device) -> float:
    """Forward and backward (input and weight gradients) of one training batch, per image."""
    module = new_module(hp, device).train()
    images, labels = collate(ShardDataset(data).__getitems__(list(range(hp.batch_size))))
    images, labels = images.to(device), labels.to(device)
    return count_flops(lambda: module.loss(module(images), labels).backward()) / hp.batch_size


def layers_alone_rate(data: ProcessedDataset, hp: Hyperparameters, device: torch.device
                      ) -> tuple[float, float]:
    """(images/s, FLOPs per image) of one training batch through the model's layers alone."""
    module = new_module(hp, device).train()
    images, _ = collate(ShardDataset(data).__getitems__(list(range(hp.batch_size))))
    images = images.to(device)
    with autocast(hp, device):  # each layer in the precision it computes in on the path
        seconds, flops = layers_alone(module, lambda: module(images), backward=True, device=device)
    return hp.batch_size / seconds, flops / hp.batch_size


# The plain loop's sides: the job's, and the job's without one of round 2's levers; and in float32
# where the job's default is bf16 (a CPU with AMX: algorithm/train.py).
PLAIN_SIDES = {"plain loop": {}, "all taps": {"centre_taps": False},
               "per-tensor AdamW": {"fused": False}}
FLOAT32_SIDE = {"float32": {"float32": True}}


def measure(copies: int, epochs: int, device: torch.device, batch_size: int) -> list[Comparison]:
    hp = Hyperparameters(lr_scheduler="none", batch_size=batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        data = make_dataset(Path(tmp) / "train", copies)
        bf16 = precision(hp, device).startswith("bf16")
        times = epoch_seconds(data, hp, device, epochs,
                              PLAIN_SIDES | (FLOAT32_SIDE if bf16 else {}))
        print_epochs(times)
        rates = {side: len(data) / min(seconds) for side, seconds in times.items()}  # images/s
        plain, lightning = rates["plain loop"], rates["Lightning"]
        ceiling, ceiling_flops = max(layers_alone_rate(data, hp, device) for _ in range(CEILINGS))
        flops = flops_per_image(data, hp, device)
        digits = make_dataset(Path(tmp) / "tiny", TINY_COPIES, TINY_SIZE)
        steps = -(-len(digits) // hp.batch_size)
        tiny = epoch_seconds(digits, hp, device, epochs, {"plain loop": {}}, tiny=True)
        plain_step, lightning_step = (min(tiny[side]) / steps * 1e3
                                      for side in ("plain loop", "Lightning"))
    workload = (f"{ARCH}, {len(data)} images 32x32, batch {hp.batch_size}, AdamW, precision"
                f" {precision(hp, device)}, CPU threads {torch.get_num_threads()}; {epochs} epochs a"
                f" side, the sides taking turns step by step in one process; the first a warm-up;"
                f" each side's best epoch")
    dtype = "bfloat16" if bf16 else "float32"
    lightning_added = lightning_step - plain_step  # ms a step
    lightning_step_ms = hp.batch_size / lightning * 1e3  # the real path's step
    return [Comparison("training", "training: Lightning job path vs plain PyTorch loop"
                       + (f", batch {hp.batch_size}" if hp.batch_size != BATCH else ""), workload,
                       "plain loop", plain, "Lightning", lightning, "images/s", target=0.97,
                       device=device.type, flops_per_image=flops, dtype=dtype,
                       pairs=per_epoch(times, "plain loop", "Lightning")),
            Comparison("training", "training: the model's layers alone vs the Lightning job path",
                       workload + describe(backward=True, times=f"best of {CEILINGS} times"),
                       SIDE, ceiling, "Lightning", lightning, "images/s", device=device.type,
                       flops_per_image=flops, dtype=dtype,
                       notes=[flops_note(ceiling_flops, flops)]),
            Comparison("training", "training: each path's own cost a step (one linear layer)",
                       f"the same paths with the network replaced by one linear layer, on"
                       f" {len(digits)} digits at {TINY_SIZE}x{TINY_SIZE} ({steps} steps an epoch);"
                       f" the sides taking turns step by step; {epochs} epochs, the first a"
                       f" warm-up; each side's best epoch",
                       "plain loop", plain_step, "Lightning", lightning_step, "ms",
                       lower_is_better=True, device=device.type,
                       pairs=per_epoch(tiny, "plain loop", "Lightning", rate=False),
                       notes=[f"Lightning adds {lightning_added:.1f} ms a step:"
                              f" {lightning_added / lightning_step_ms:.1%} of the Lightning job"
                              f" path's step above"]),
            Comparison("training", "training: centre taps on 1 x 1 maps, plain loop", workload,
                       "all taps", rates["all taps"], "centre taps (the job's)", plain,
                       "images/s", device=device.type, dtype=dtype,
                       pairs=per_epoch(times, "all taps", "plain loop")),
            Comparison("training", "training: a fused AdamW step, plain loop", workload,
                       "per-tensor AdamW", rates["per-tensor AdamW"], "fused AdamW (the job's)", plain,
                       "images/s", device=device.type, dtype=dtype,
                       pairs=per_epoch(times, "per-tensor AdamW", "plain loop"))] + ([
            Comparison("training", "training: bf16 autocast, plain loop", workload,
                       "float32", rates["float32"],
                       "bf16" + (", channels last" if channels_last(precision(hp, device),
                                                                     device.type) else "")
                       + " (the job's)", plain, "images/s", device=device.type,
                       pairs=per_epoch(times, "float32", "plain loop"))] if bf16 else [])


def main() -> None:
    args_parser = parser(__doc__, "one copy of the digits, 3 epochs a side")
    args_parser.add_argument("--data-copies", type=int, default=None, help="default 2")
    args_parser.add_argument("--epochs", type=int, default=None,
                             help="epochs a side, the first untimed (default 8)")
    args_parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args_parser.add_argument("--batch-size", type=int, default=BATCH, help=f"default {BATCH}")
    args = args_parser.parse_args()
    epochs = max(2, args.epochs or (3 if args.quick else 8))  # at least one timed epoch
    finish(args, measure(args.data_copies or (1 if args.quick else 2), epochs,
                         torch.device(args.device), args.batch_size))


if __name__ == "__main__":
    main()
