"""`python -m pipelines run FILE.yaml --param k=v ... [--engine local|docker|podman] [--resume]
[--max-parallel N]`; `python -m pipelines tune FILE.yaml --trials N [--search-space FILE]` for an
Optuna study over its training job (pipelines/tune.py); `approve|reject NAME VERSION` and
`versions NAME` for the model registry; `python -m pipelines algorithm-spec` for the algorithm
image's CreateAlgorithm; `export`, `upsert` and `start` for SageMaker Pipelines
(pipelines/export.py); `deploy` and `smoke-test` for endpoints (pipelines/deploy.py)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from pipelines.definition import load_pipeline
from pipelines.registry import APPROVED, REJECTED, Registry
from shared.atomic import write_json_atomic
from shared.errors import UserError


def parse_param(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--param {text!r}: expected NAME=VALUE")
    return name, value


def parse_version(text: str) -> int:
    number = text[1:] if text[:1] in ("v", "V") else text
    if not number.isdigit() or int(number) < 1:
        raise argparse.ArgumentTypeError(f"version {text!r}: expected a number such as 3 or v3")
    return int(number)


def add_run_options(parser: argparse.ArgumentParser, run_dir: str) -> None:
    """The options `run` and `tune` share: parameters, the engine and the run folder."""
    parser.add_argument("definition", type=Path)
    parser.add_argument("--param", type=parse_param, action="append", default=[],
                        help="pipeline parameter NAME=VALUE (repeatable)")
    parser.add_argument("--engine", choices=("local", "docker", "podman"), default="local")
    parser.add_argument("--cold-start", action="store_true",
                        help="local engine: start each job as a fresh interpreter, not as a fork of"
                             " one that has imported torch and the other libraries")
    parser.add_argument("--images", type=Path, default=None,
                        help="JSON map component -> image URI (make image-uris) for docker/podman")
    parser.add_argument("--run-dir", type=Path, default=None, help=run_dir)


def engine_of(args: argparse.Namespace):
    from pipelines.jobs import Engine  # the runner's imports: the export's environment lacks them

    return Engine(args.engine, json.loads(args.images.read_text()) if args.images else None,
                  warm=not args.cold_start)


def default_run_dir(kind: str, pipeline_name: str) -> Path:
    return Path("runs") / f"{kind}{pipeline_name}-{time.strftime('%Y%m%d-%H%M%S')}"


def tune_command(args: argparse.Namespace) -> int:
    from pipelines.search_space import load_search_space, parse_assignment
    from pipelines.tune import METRIC, Tuner

    pipeline = load_pipeline(args.definition)
    space = load_search_space(args.search_space)
    tuner = Tuner(pipeline, dict(args.param), args.run_dir or default_run_dir("tune-", pipeline.name),
                  space, engine_of(args), seed=args.seed, startup_trials=args.pruner_startup_trials,
                  warmup_epochs=args.pruner_warmup_epochs,
                  enqueue=[parse_assignment(text, space) for text in args.enqueue])
    try:
        study = tuner.run(args.trials)
    except KeyboardInterrupt:
        print(f"interrupted: resume with the same command and --run-dir {tuner.run_dir}",
              file=sys.stderr)
        return 130
    print(f"study {tuner.run_dir}: trials.csv; resume or extend it with the same command and"
          f" --run-dir {tuner.run_dir} [--trials MORE]")
    best = tuner.best(study)
    if best is None:
        print("error: no trial completed; see trials.csv", file=sys.stderr)
        return 1
    print(f"best: trial {best.number}, {METRIC} {best.value:.4f} ("
          + ", ".join(f"{k}={v}" for k, v in best.params.items()) + "); best.json and plots written")
    if not args.register:
        return 0
    result = tuner.register(study)
    print(result.summary())
    return 0 if result.ok else 1


def registry_command(args: argparse.Namespace) -> int:
    registry = Registry(args.registry, args.model_name)
    if args.command == "versions":
        for v in registry.versions():
            accuracy = v.metadata.get("accuracy")
            print(f"v{v.number}\t{v.status}\t{v.metadata.get('registered', '')}\t"
                  f"accuracy {'-' if accuracy is None else f'{accuracy:.4f}'}")
        return 0
    version = registry.set_status(args.version, args.status, args.note)
    print(f"{registry.name} v{version.number}: {version.status}")
    return 0


def aws_command(args: argparse.Namespace) -> int:
    """export, upsert, start, deploy, smoke-test: the SageMaker SDK and boto3 (the aws extra).
    AWS's refusals (no credentials, a missing pipeline, a denied call) become one-line errors."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return _aws_command(args)
    except (BotoCoreError, ClientError) as exc:
        raise UserError(f"AWS: {exc}") from None


def _aws_command(args: argparse.Namespace) -> int:
    from pipelines import aws

    if args.command == "export":
        from pipelines.export import Target, Tuning, export_definition, region_of
        from pipelines.search_space import load_search_space

        images = json.loads(args.images.read_text()) if args.images.is_file() else None
        if not isinstance(images, dict):
            raise UserError(f"--images {args.images}: expected the JSON map of make image-uris")
        tuning = None if args.tuning is None else Tuning(
            load_search_space(args.tuning or None), args.tuning_jobs, args.tuning_parallel)
        target = Target(images, args.role, args.s3, region_of(images, args.region),
                        dict(args.param), spot=args.spot, tuning=tuning)
        definition, left_out = export_definition(args.definition, target)
        write_json_atomic(args.out, definition)
        steps = ", ".join(s["Name"] for s in definition["Steps"])
        print(f"wrote {args.out}: {len(definition['Parameters'])} parameters; steps {steps}")
        for line in left_out:
            print(f"  not a SageMaker step: {line}")
        return 0
    client = aws.sagemaker_client(args.region)
    if args.command in ("deploy", "smoke-test"):
        from pipelines.deploy import deploy, endpoint_predictor, smoke_test

        if args.command == "deploy":
            endpoint = deploy(client, args.model_name, args.version, args.stage, args.role)
            print(f"endpoint {endpoint}: {args.model_name} v{args.version} ({args.stage})")
            images = args.smoke_images
        else:
            endpoint, images = args.endpoint, args.images
        if images is None:
            return 0
        client.get_waiter("endpoint_in_service").wait(EndpointName=endpoint)
        runtime = aws.sagemaker_client(args.region, "sagemaker-runtime")
        wrong = smoke_test(endpoint_predictor(runtime, endpoint), images)
        for line in wrong:
            print(f"  wrong: {line}", file=sys.stderr)
        print(f"smoke test of {endpoint}: {'FAILED' if wrong else 'passed'}"
              f" ({len(wrong)} wrong)")
        return 1 if wrong else 0
    if args.command == "upsert":
        print(aws.upsert(client, args.name, args.definition, args.role))
        return 0
    arn, values = aws.start(client, args.name, dict(args.param))
    print(arn)
    for name, value in values.items():
        print(f"  {name} = {value}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a pipeline definition")
    add_run_options(run, "run folder (default runs/<pipeline>-<time>; reuse it with --resume)")
    run.add_argument("--resume", action="store_true",
                     help="skip steps that completed before with unchanged inputs")
    run.add_argument("--max-parallel", type=int, default=None,
                     help="steps that may run at once, each on its own share of the CPUs"
                          " (default: one per CPU; 1 runs the steps one after another)")
    tune = commands.add_parser("tune", help="tune the training job's hyperparameters: an Optuna"
                                            " study of training trials (the tune extra)")
    add_run_options(tune, "run folder (default runs/tune-<pipeline>-<time>); the same one resumes"
                          " the study")
    tune.add_argument("--trials", type=int, required=True,
                      help="finished trials (completed, pruned or failed) the study should have")
    tune.add_argument("--search-space", type=Path, default=None,
                      help="YAML search space (default pipelines/search-space.yaml)")
    tune.add_argument("--seed", type=int, default=None, help="seed of the TPE sampler")
    tune.add_argument("--pruner-startup-trials", type=int, default=3,
                      help="completed trials before any trial is pruned (default 3)")
    tune.add_argument("--pruner-warmup-epochs", type=int, default=1,
                      help="epochs every trial runs before it may be pruned (default 1)")
    tune.add_argument("--enqueue", action="append", default=[], metavar="NAME=VALUE[,...]",
                      help="a trial a new study runs first, e.g. the current defaults"
                           " (repeatable; names not given are sampled)")
    tune.add_argument("--register", action="store_true",
                      help="then run the whole pipeline in the best trial's run folder, reusing"
                           " its training, to evaluate, gate and register its model")
    for command, status in (("approve", APPROVED), ("reject", REJECTED)):
        change = commands.add_parser(command, help=f"set a registered version's status to {status}")
        change.add_argument("model_name")
        change.add_argument("version", type=parse_version)
        change.add_argument("--registry", type=Path, default=Path("registry"))
        change.add_argument("--note", default="", help="why (kept in the version's history)")
        change.set_defaults(status=status)
    versions = commands.add_parser("versions", help="a registered model's versions and statuses")
    versions.add_argument("model_name")
    versions.add_argument("--registry", type=Path, default=Path("registry"))
    spec = commands.add_parser("algorithm-spec", help="write the algorithm image's CreateAlgorithm"
                                                      " request (hyperparameters, metrics, ...)")
    spec.add_argument("--images", type=Path, default=Path("image-uris.json"),
                      help="JSON map component -> image URI (make image-uris)")
    spec.add_argument("--name", default="image-classifier", help="the algorithm's name")
    spec.add_argument("--out", type=Path, default=Path("algorithm.json"))
    export = commands.add_parser("export", help="write a SageMaker pipeline definition (needs the"
                                                " aws extra; no credentials)")
    export.add_argument("definition", type=Path)
    export.add_argument("--images", type=Path, default=Path("image-uris.json"),
                        help="JSON map component -> image URI (make image-uris after make push)")
    export.add_argument("--role", required=True, help="the IAM role ARN the jobs run as")
    export.add_argument("--s3", required=True, help="s3://bucket/prefix for the jobs' outputs")
    export.add_argument("--region", default=None,
                        help="default: the images' ECR region, else AWS_DEFAULT_REGION")
    export.add_argument("--param", type=parse_param, action="append", default=[],
                        help="a parameter's default in the definition, NAME=VALUE (repeatable)")
    export.add_argument("--spot", action="store_true", help="managed spot training (checkpoints"
                                                             " go to S3 and resume)")
    export.add_argument("--tuning", nargs="?", const="", default=None, metavar="SEARCH_SPACE",
                        help="the training step as a TuningStep (HyperparameterTuner) over this"
                             " search space (default pipelines/search-space.yaml)")
    export.add_argument("--tuning-jobs", type=int, default=20,
                        help="training jobs the tuner runs in all (default 20)")
    export.add_argument("--tuning-parallel", type=int, default=2,
                        help="training jobs the tuner runs at once (default 2)")
    export.add_argument("--out", type=Path, required=True)
    upsert = commands.add_parser("upsert", help="create or update a SageMaker pipeline from an"
                                                " exported definition (needs credentials)")
    upsert.add_argument("definition", type=Path)
    upsert.add_argument("--name", required=True, help="the SageMaker pipeline's name")
    upsert.add_argument("--role", required=True, help="the IAM role ARN SageMaker runs it as")
    upsert.add_argument("--region", default=None)
    start = commands.add_parser("start", help="start a SageMaker pipeline; the model, detector"
                                              " and retraining guard come from its model package"
                                              " group when not given (needs credentials)")
    start.add_argument("name")
    start.add_argument("--param", type=parse_param, action="append", default=[])
    start.add_argument("--region", default=None)
    deploy = commands.add_parser("deploy", help="deploy an Approved model package version:"
                                                " serverless staging or instance production"
                                                " (needs credentials)")
    deploy.add_argument("model_name", help="the model package group")
    deploy.add_argument("version", type=parse_version)
    deploy.add_argument("--stage", choices=("staging", "production"), required=True)
    deploy.add_argument("--role", required=True, help="the IAM role ARN the endpoint's model uses")
    deploy.add_argument("--smoke-images", type=Path, default=None,
                        help="an ImageFolder to send once the endpoint is up; a wrong answer fails")
    deploy.add_argument("--region", default=None)
    smoke = commands.add_parser("smoke-test", help="send an endpoint labelled images; fails on a"
                                                   " wrong answer (needs credentials)")
    smoke.add_argument("endpoint")
    smoke.add_argument("--images", type=Path, required=True, help="an ImageFolder")
    smoke.add_argument("--region", default=None)
    args = parser.parse_args(argv)
    try:
        if args.command in ("export", "upsert", "start", "deploy", "smoke-test"):
            return aws_command(args)
        if args.command == "algorithm-spec":
            from pipelines.algorithm_spec import algorithm_spec, image_uri_from  # loads torch

            body = algorithm_spec(image_uri_from(args.images), args.name)
            write_json_atomic(args.out, body)
            print(f"wrote {args.out}: CreateAlgorithm for {body['TrainingSpecification']['TrainingImage']}")
            return 0
        if args.command == "tune":
            return tune_command(args)
        if args.command != "run":
            return registry_command(args)
        from pipelines.runner import Runner

        pipeline = load_pipeline(args.definition)
        run_dir = args.run_dir or default_run_dir("", pipeline.name)
        runner = Runner(pipeline, dict(args.param), run_dir, engine_of(args),
                        resume=args.resume, max_parallel=args.max_parallel)
        result = runner.run()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(result.summary())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
