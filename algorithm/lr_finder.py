"""`lr_finder=true`: Lightning's learning-rate range test before training, and training at its
suggestion instead of `learning_rate`.

The sweep runs `lr_finder_steps` optimiser steps on the training data with the rate growing
exponentially from MIN_LR to MAX_LR (stopping early once the loss explodes), from the initial
weights, which Lightning restores afterwards; the suggestion is the rate where the loss falls
fastest. `output/data/lr_finder.json` (every rate and loss, the suggestion, the rate used) and
`lr_finder.png` (the curve, the suggestion marked) are the record. The same record in the
checkpoint folder makes a resumed job train on at the rate it found, without sweeping again.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytorch_lightning as pl

from shared.atomic import write_json_atomic
from shared.plotting import pyplot, save_figure
from shared.sagemaker import JobError

log = logging.getLogger(__name__)
MIN_LR, MAX_LR = 1e-6, 1.0
RECORD, PLOT = "lr_finder.json", "lr_finder.png"


def find_learning_rate(trainer: pl.Trainer, module: pl.LightningModule,
                       data: pl.LightningDataModule, steps: int, fallback: float,
                       output_data: Path, checkpoints: Path) -> float:
    """Set `module.learning_rate` from the sweep (or the resumed job's earlier one); returns it."""
    if trainer.world_size > 1:
        raise JobError("lr_finder=true runs in one training process: use one host and"
                       " processes_per_host=1 (or find the rate once and pass it as"
                       " learning_rate)")
    earlier = checkpoints / RECORD
    if earlier.is_file():
        rate = json.loads(earlier.read_text())["used"]
        log.info("learning-rate finder: resuming with the rate found before, %.3g", rate)
        module.learning_rate = rate
        return rate
    from pytorch_lightning.tuner import Tuner

    finder = Tuner(trainer).lr_find(module, datamodule=data, min_lr=MIN_LR, max_lr=MAX_LR,
                                    num_training=steps, update_attr=False)
    suggestion = finder.suggestion() if finder is not None else None
    usable = suggestion is not None and math.isfinite(suggestion) and suggestion > 0
    rate = float(suggestion) if usable else fallback
    results = finder.results if finder is not None else {"lr": [], "loss": []}
    record = {"suggestion": float(suggestion) if usable else None, "used": rate,
              "fallback": None if usable else "learning_rate: the sweep gave no suggestion",
              "min_lr": MIN_LR, "max_lr": MAX_LR, "steps": len(results["lr"]),
              "lr": [float(x) for x in results["lr"]],
              "loss": [float(x) if math.isfinite(x) else None for x in results["loss"]]}
    output_data.mkdir(parents=True, exist_ok=True)
    write_json_atomic(output_data / RECORD, record)
    if finder is not None and results["lr"]:
        pyplot()  # no display, no math parsing: before Lightning's plot imports pyplot
        from matplotlib.ticker import FuncFormatter, NullFormatter

        figure = finder.plot(suggest=usable, show=False)
        axes = figure.axes[0]
        axes.set_title(f"learning-rate finder: training at {rate:.3g}")
        axes.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))  # no TeX labels
        axes.xaxis.set_minor_formatter(NullFormatter())
        save_figure(figure, output_data / PLOT, dpi=100)
    write_json_atomic(earlier, record)  # last: a job stopped before this sweeps again
    log.info("learning-rate finder: %d steps from %g to %g, suggestion %s; training at %.3g",
             record["steps"], MIN_LR, MAX_LR,
             f"{suggestion:.3g}" if usable else "none (keeping learning_rate)", rate)
    module.learning_rate = rate
    return rate
