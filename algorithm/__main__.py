"""`python -m algorithm {train,serve}`: what SageMaker runs as `docker run <image> train|serve`.

Training jobs are configured by input/config/hyperparameters.json, the server by environment
variables (and `--host` for tests), as SageMaker does.
"""

import os
from dataclasses import dataclass

from algorithm.hyperparameters import hyperparameters_help
from shared.sagemaker.entrypoint import Mode, exit_process, main
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


MODES = {
    "train": Mode(TrainFlags, "train a model (SageMaker training job)", job="training",
                  epilog=hyperparameters_help()),
    "serve": Mode(ServeFlags, "serve the model over HTTP (endpoint, Batch Transform)",
                  job="server"),
}

if __name__ == "__main__":
    exit_process(main("algorithm", MODES, __doc__))
