"""`python -m pipelines run FILE.yaml --param k=v ... [--engine local|docker|podman] [--resume]
[--max-parallel N]`; `python -m pipelines approve|reject NAME VERSION` and `versions NAME` for the
model registry; `python -m pipelines algorithm-spec` for the algorithm image's CreateAlgorithm."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from pipelines.definition import load_pipeline
from pipelines.jobs import Engine
from pipelines.registry import APPROVED, REJECTED, Registry
from pipelines.runner import Runner
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a pipeline definition")
    run.add_argument("definition", type=Path)
    run.add_argument("--param", type=parse_param, action="append", default=[],
                     help="pipeline parameter NAME=VALUE (repeatable)")
    run.add_argument("--engine", choices=("local", "docker", "podman"), default="local")
    run.add_argument("--images", type=Path, default=None,
                     help="JSON map component -> image URI (make image-uris) for docker/podman")
    run.add_argument("--run-dir", type=Path, default=None,
                     help="run folder (default runs/<pipeline>-<time>; reuse it with --resume)")
    run.add_argument("--resume", action="store_true",
                     help="skip steps that completed before with unchanged inputs")
    run.add_argument("--max-parallel", type=int, default=None,
                     help="steps that may run at once, each on its own share of the CPUs"
                          " (default: one per CPU; 1 runs the steps one after another)")
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
    args = parser.parse_args(argv)
    try:
        if args.command == "algorithm-spec":
            from pipelines.algorithm_spec import algorithm_spec, image_uri_from  # loads torch

            body = algorithm_spec(image_uri_from(args.images), args.name)
            write_json_atomic(args.out, body)
            print(f"wrote {args.out}: CreateAlgorithm for {body['TrainingSpecification']['TrainingImage']}")
            return 0
        if args.command != "run":
            return registry_command(args)
        pipeline = load_pipeline(args.definition)
        run_dir = args.run_dir or Path("runs") / f"{pipeline.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        images = json.loads(args.images.read_text()) if args.images else None
        runner = Runner(pipeline, dict(args.param), run_dir, Engine(args.engine, images),
                        resume=args.resume, max_parallel=args.max_parallel)
        result = runner.run()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(result.summary())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
