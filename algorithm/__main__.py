"""`python -m algorithm {train,serve}`: what SageMaker runs as `docker run <image> train|serve`.

Training jobs are configured by input/config/hyperparameters.json, the server by environment
variables (and `--host` for tests), as SageMaker does.
"""

from __future__ import annotations

import sys

from shared.logs import configure_logging
from shared.sagemaker import TrainingPaths, parser_reporting_to, run_job


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    failure_file = TrainingPaths.current().failure_file
    parser = parser_reporting_to(failure_file)(prog="python -m algorithm", description=__doc__)
    modes = parser.add_subparsers(dest="mode", required=True)
    modes.add_parser("train", help="train a model (SageMaker training job)")
    serve = modes.add_parser("serve", help="serve the model over HTTP (endpoint, Batch Transform)")
    serve.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    args = parser.parse_args(argv)
    if args.mode == "train":
        return run_job(train_job, failure_file)
    return run_job(lambda: serve_job(args.host), failure_file)


# The heavy imports happen inside the job, where a SIGTERM already ends it with a reason.
def train_job() -> None:
    from algorithm import train

    train.run()


def serve_job(host: str) -> None:
    from algorithm.serve import server

    server.main(host=host)


if __name__ == "__main__":
    sys.exit(main())
