"""`make run-<component>-<mode>`: run one image as SageMaker would, on the digits sample.

Each run gets its own `/opt/ml`-style folder under RUN_DIR (`<component>-<mode>/opt_ml`), laid out
by the pipeline runner's job functions (the same layout the pipelines use); a run that needs an
upstream output (a model, a processed dataset, a detector) says which target makes it.
`run-algorithm-serve` starts the model server in the foreground on http://localhost:8080.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from pipelines.definition import Step
from pipelines.jobs import Engine, StepFailed, processing_job, training_job
from shared.sample_data import write_digits

SAMPLE = "sample"


def output(run_dir: Path, job: str, *parts: str) -> str:
    return str(run_dir / job / "opt_ml" / Path(*parts))


def specs(run_dir: Path) -> dict[str, dict]:
    sample = str(run_dir / SAMPLE)
    processed = ("processing", "output")
    return {
        "processing-train": {"inputs": {"data": sample}, "args": ["--image-size", "32"],
                             "outputs": ["train", "validation", "test", "report"]},
        "algorithm-train": {"inputs": {s: output(run_dir, "processing-train", *processed, s)
                                       for s in ("train", "validation", "test")},
                            "hyperparameters": {"model_name": "resnet10t", "epochs": "2"}},
        "monitoring-train": {"inputs": {"data": sample}, "outputs": ["detector"]},
        "explainability-train": {
            "inputs": {"data": output(run_dir, "processing-train", *processed, "validation"),
                       "model": output(run_dir, "algorithm-train", "model")},
            "args": ["--max-images", "20"], "outputs": ["explanations"]},
        "processing-serve": {"inputs": {"data": sample}, "outputs": ["data", "report"]},
        "monitoring-serve": {
            "inputs": {"data": sample,
                       "detector": output(run_dir, "monitoring-train", *processed, "detector")},
            "outputs": ["report"]},
        "explainability-serve": {
            "inputs": {"data": output(run_dir, "processing-serve", *processed, "data"),
                       "model": output(run_dir, "algorithm-train", "model")},
            "args": ["--max-images", "20"], "outputs": ["explanations"]},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="docker")
    parser.add_argument("--prefix", default="sagemaker-image-mlops")
    parser.add_argument("--tag", default="latest")
    parser.add_argument("--run-dir", type=Path, default=Path("build/opt_ml"))
    parser.add_argument("component", choices=("processing", "algorithm", "monitoring",
                                              "explainability"))
    parser.add_argument("mode", choices=("train", "serve"))
    args = parser.parse_args(argv)
    run_dir = args.run_dir.resolve()
    name = f"{args.component}-{args.mode}"
    images = {c: f"{args.prefix}-{c}:{args.tag}" for c in ("processing", "algorithm",
                                                          "monitoring", "explainability")}
    engine = Engine(args.engine, images)
    if not (run_dir / SAMPLE).is_dir():
        count = write_digits(run_dir / SAMPLE)
        print(f"wrote {count} digit images to {run_dir / SAMPLE}")

    if name == "algorithm-serve":
        model = Path(output(run_dir, "algorithm-train", "model"))
        if not (model / "model.json").is_file():
            print(f"error: no model in {model}; run `make run-algorithm-train` first", file=sys.stderr)
            return 1
        print("serving on http://localhost:8080 (/ping, /invocations); Ctrl-C stops it")
        return subprocess.call([args.engine, "run", "--rm", "-p", "8080:8080",
                                "-v", f"{model}:/opt/ml/model:ro", images["algorithm"], "serve"])

    spec = specs(run_dir)[name]
    for value in spec["inputs"].values():
        if not Path(value).exists():
            upstream = Path(value).relative_to(run_dir).parts[0]
            print(f"error: {value} is missing; run `make run-{upstream}` first", file=sys.stderr)
            return 1
    step_dir = run_dir / name
    step = Step(name=name, job="training" if args.mode == "train" and args.component == "algorithm"
                else "processing", spec=spec, component=args.component, mode=args.mode)
    run = training_job if step.job == "training" else processing_job
    log = step_dir / "job.log"
    step_dir.mkdir(parents=True, exist_ok=True)
    try:
        outputs = run(step, spec, step_dir, engine, log)
    except StepFailed as exc:
        print(f"error: {name} failed: {exc} (log: {log})", file=sys.stderr)
        return 1
    for key, path in outputs.items():
        print(f"{key}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
