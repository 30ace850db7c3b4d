"""`python -m algorithm {train,serve,evaluate}`: what SageMaker runs as `docker run <image>
train|serve`, and the evaluation Processing job (`evaluate`, flags as container arguments).

Training jobs are configured by input/config/hyperparameters.json, the server by environment
variables (and `--host` for tests), as SageMaker does.
"""

import os
from dataclasses import dataclass
from pathlib import Path

from algorithm.hyperparameters import hyperparameters_help
from shared.sagemaker.entrypoint import Mode, exit_process, input_flag, main, output_flag
from shared.schema import setting


@dataclass(frozen=True)
class TrainFlags:
    """None: a training job is configured by its hyperparameters.json."""

    def run(self) -> None:
        from algorithm import train

        train.run()


@dataclass(frozen=True)
class ServeFlags:
    host: str = setting("0.0.0.0", help="address to bind", min_length=1)

    def run(self) -> None:
        # Before torch loads OpenMP: the forward pass runs on each worker's inference thread, and
        # OpenMP's threads spinning on after it starved the request thread it hands the answer
        # to (requests of 10 ms took 500 ms on a busy machine). A bounded spin fixes that and,
        # unlike OMP_WAIT_POLICY=PASSIVE, keeps batch throughput. Set it yourself to override.
        os.environ.setdefault("GOMP_SPINCOUNT", "200000")
        from algorithm.serve import server

        server.main(host=self.host)


@dataclass(frozen=True)
class EvaluateFlags:
    model: Path | None = input_flag("model", "the candidate: model folder or model.tar.gz")
    test: Path | None = input_flag("test", "processed test set (labelled)")
    champion: Path | None = input_flag("champion", "the model in use, compared on the same"
                                                   " images (optional)")
    output: Path | None = output_flag("evaluation", "evaluation folder")
    batch_size: int = setting(256, min=1, max=65_536, help="images per forward pass")
    seed: int = setting(0, min=0, help="seed of the noise corruption")
    champion_significance: float = setting(
        0.05, min=0.0, max=1.0, help="a candidate less accurate than the champion still passes"
        " when an exact McNemar test's p-value is above this (1: never)")

    def run(self) -> None:
        from algorithm import evaluate

        evaluate.evaluate(self)


MODES = {
    "train": Mode(TrainFlags, "train a model (SageMaker training job)", job="training",
                  epilog=hyperparameters_help()),
    "serve": Mode(ServeFlags, "serve the model over HTTP (endpoint, Batch Transform)",
                  job="server"),
    "evaluate": Mode(EvaluateFlags, "measure a model on a processed test set: accuracy,"
                                    " robustness, calibration, champion (Processing job)"),
}

if __name__ == "__main__":
    exit_process(main("algorithm", MODES, __doc__))
