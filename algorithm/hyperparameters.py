"""The training job's hyperparameters, declared once; SageMaker passes them all as strings.

`algorithm train --help` lists them with type, default and range; the algorithm specification
(`CreateAlgorithm`), the tuner and the training pipeline's parameters read the same declarations.
The defaults (resnet10t, 6 epochs of batch 32 at 2e-3, label smoothing 0.1) are the ones
bench/quality.py measured to beat pixel baselines on small real data sets from scratch (README,
"Model quality").
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.schema import check_defaults, fields_of, help_line, setting

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULERS = ("none", "cosine", "step", "onecycle")
PRECISIONS = ("auto", "32", "16-mixed", "bf16-mixed")


@dataclass(frozen=True)
class Hyperparameters:
    model_name: str = setting("resnet10t", help="any timm architecture (timm.list_models())",
                              min_length=1)
    epochs: int = setting(6, help="passes over the training data", min=1, max=10_000,
                          tunable=True)
    batch_size: int = setting(32, help="images per step on each process", min=1, max=65_536,
                              tunable=True)
    optimizer: str = setting("adamw", help="optimizer", choices=OPTIMIZERS, tunable=True)
    learning_rate: float = setting(2e-3, help="peak learning rate", min=0.0, max=10.0,
                                   tunable=True)
    lr_finder: bool = setting(False, help="sweep the learning rate first (Lightning's finder,"
                                          " 1e-6 to 1) and train at its suggestion instead of"
                                          " learning_rate; the curve is in output/data")
    lr_finder_steps: int = setting(100, help="optimiser steps the learning-rate sweep takes",
                                   min=10, max=10_000)
    weight_decay: float = setting(1e-4, help="L2 / decoupled weight decay", min=0.0, max=1.0,
                                  tunable=True)
    momentum: float = setting(0.9, help="momentum for sgd and rmsprop", min=0.0, max=1.0,
                              tunable=True)
    lr_scheduler: str = setting("cosine", help="learning-rate schedule", choices=SCHEDULERS,
                                tunable=True)
    label_smoothing: float = setting(0.1, help="cross-entropy label smoothing", min=0.0, max=0.5,
                                     tunable=True)
    early_stopping_patience: int = setting(0, help="epochs without val_loss improvement before"
                                                   " stopping; 0 disables", min=0)
    seed: int = setting(42, help="seed for weights, shuffling and augmentation", min=0)
    num_workers: int = setting(-1, help="data loader processes; -1 picks (0 on CPU, up to 8 on GPU)",
                               min=-1, max=64)
    precision: str = setting("auto", help="numeric precision; auto is bf16/16-mixed on GPU,"
                                          " bf16-mixed on a CPU with AMX, else 32",
                             choices=PRECISIONS)
    pretrained_weights: str | None = setting(None, help="path to a local .safetensors file for the"
                                                        " backbone")
    freeze_backbone_epochs: int = setting(0, help="train only the classifier for this many first"
                                                  " epochs", min=0, tunable=True)
    accuracy_threshold: float | None = setting(None, help="evaluation.json records passed=false"
                                                          " below this", min=0.0, max=1.0)
    online_augmentation: bool = setting(False, help="random shifts and rotations while training"
                                                    " (processing already augments offline)",
                                       tunable=True)
    reinitialize_head: bool = setting(False, help="allow a warm-start model with other classes:"
                                                  " keep its backbone, start a new classifier")
    processes_per_host: int = setting(0, help="training processes per host; 0 is one per GPU (or"
                                              " 1 on CPU); more than 1 uses DDP", min=0, max=64)


check_defaults(Hyperparameters)


def hyperparameters_help() -> str:
    """The block `algorithm train --help` ends with: every hyperparameter, one per line."""
    lines = ["hyperparameters (input/config/hyperparameters.json; every value a string):"]
    lines += [f"  {field.name}: {help_line(field, tp)}" for field, tp in fields_of(Hyperparameters)]
    return "\n".join(lines)
