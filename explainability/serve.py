"""`explainability serve`: explain production images.

Production data is usually unlabelled; when it has class folders they may be only some of the
model's classes, and labels are matched to the model's by name.
"""

from __future__ import annotations

import argparse

from explainability import job
from shared.sagemaker import ProcessingContext


def run(args: argparse.Namespace, ctx: ProcessingContext) -> None:
    job.run(args, ctx, mode="serve")
