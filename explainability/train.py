"""`explainability train`: explain training/validation images and write per-class reference maps.

The data must carry the model's classes, in order (it was processed for this model). Per-class mean
attribution maps (what the model looks at when it gets each class right) are the reference that
production explanations are compared against.
"""

from __future__ import annotations

import argparse

from explainability import job
from shared.sagemaker import ProcessingContext


def run(args: argparse.Namespace, ctx: ProcessingContext) -> None:
    job.run(args, ctx, mode="train")
