"""`make demo`: the whole MLOps loop on the embedded digits, with the real pipelines and components.

1. training pipeline on the original images -> model v1 (and its drift reference);
2. batch inference on clean held-out images: no drift expected, accuracy measured;
3. batch inference on the same images visibly corrupted (rotated, noisy): drift, accuracy drop; the
   batch pipeline's retrain step then runs the training pipeline with labelled corrupted images
   added as a second labelled input (the processing job merges them and records each image's
   channel), warm-starting from v1, with those images as the new drift reference;
4. -> model v2, pending approval;
5. the same corrupted images again while v2 waits: drift, but no second retraining (the guard);
6. v2 approved; batch inference on the corrupted images with v2: accuracy recovers, and no drift
   against v2's reference: the loop has converged;
7. optionally (`--label-studio-tasks N`), stage 3's drifted images as Label Studio tasks,
   pre-labelled by v1: where people would label the data that step 3 here takes as given.
Each registered version waits in PendingManualApproval; the demo approves v1 and v2 explicitly (as
a reviewer would with `python -m pipelines approve`), and the batch runs, given no model, use the
latest approved version.
Ends with a markdown report (tables and plots) whose path it prints. Every number is measured.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pipelines import warm
from pipelines.definition import load_pipeline
from pipelines.jobs import Engine
from pipelines.registry import APPROVED, Registry
from pipelines.runner import Runner, RunResult
from shared.evaluation import read_accuracy
from shared.sample_data import digits_images

HERE = Path(__file__).resolve().parent
HELD_OUT_FRACTION = 0.3


def corrupt(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A visible shift: rotated by 30-45 degrees either way, with Gaussian noise."""
    angle = float(rng.uniform(30, 45) * rng.choice([-1, 1]))
    rotated = Image.fromarray(image).rotate(angle, resample=Image.Resampling.BILINEAR,
                                            fillcolor=(255, 255, 255))
    noisy = np.asarray(rotated, dtype=np.float64) + rng.normal(0, 40, image.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def write_folder(root: Path, items: list[tuple[str, str, np.ndarray]]) -> Path:
    for label, name, image in items:
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / label / f"{name}.png")
    return root


def make_data(root: Path, seed: int = 0) -> dict[str, Path]:
    """original (training) / held-out clean / held-out corrupted / labelled corrupted training."""
    images, labels = digits_images(32)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    cut = int(len(images) * (1 - HELD_OUT_FRACTION))
    train = [(labels[i], f"digit-{i:04d}", images[i]) for i in order[:cut]]
    held = [(labels[i], f"digit-{i:04d}", images[i]) for i in order[cut:]]
    corrupted_train = [(label, f"{name}-shifted", corrupt(im, rng)) for label, name, im in train]
    corrupted_held = [(label, f"{name}-shifted", corrupt(im, rng)) for label, name, im in held]
    return {
        "original": write_folder(root / "original", train),
        "clean": write_folder(root / "production-clean", held),
        "drifted": write_folder(root / "production-drifted", corrupted_held),
        "labelled_shifted": write_folder(root / "labelled-shifted", corrupted_train),
    }


def run(definition: str, params: dict[str, object], run_dir: Path,
        engine: Engine | None = None) -> RunResult:
    pipeline = load_pipeline(HERE / definition)
    result = Runner(pipeline, {k: str(v) for k, v in params.items() if v is not None},
                    run_dir, engine).run()
    print(result.summary(), flush=True)
    if (failed := result.failed_step) is not None:
        sys.exit(f"the {definition} pipeline failed at {failed.name}: {failed.detail}")
    return result


def registered_version(result: RunResult) -> Path:
    """The version the training pipeline registered; a clear exit where its gate stopped it."""
    if result.state("register") != "completed":
        sys.exit(f"the training pipeline registered no model: evaluation gave accuracy "
                 f"{evaluation_accuracy(result):.3f}, below its threshold (step check_evaluation: "
                 f"{result.state('check_evaluation')}); try more --epochs")
    return result.outputs("register")["version_dir"]


def approve(version_dir: Path, registry: Path) -> Path:
    """What a reviewer does with `python -m pipelines approve digits N`: a new version waits in
    PendingManualApproval, and batch runs keep the approved one until then."""
    number = int(version_dir.name[1:])
    Registry(registry, version_dir.parent.name).set_status(number, APPROVED,
                                                           "approved by the demo")
    print(f"approved {version_dir.parent.name} v{number}", flush=True)
    return version_dir


def evaluation_accuracy(result: RunResult) -> float:
    return read_accuracy(result.outputs("train")["model"] / "evaluation.json")


def batch_summary(result: RunResult) -> dict:
    return json.loads((result.outputs("report")["report"] / "report.json").read_text())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m pipelines.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo-output"))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--retrain-epochs", type=int, default=3,
                        help="epochs of the drift retraining, which starts from v1's weights")
    parser.add_argument("--explain-images", type=int, default=40)
    parser.add_argument("--label-studio-tasks", type=int, default=0, metavar="N",
                        help="end by exporting the N least confident drifted images of stage 3"
                             " as Label Studio tasks (python -m labelling), into <out>/label-studio")
    parser.add_argument("--cold-start", action="store_true",
                        help="start each job as a fresh interpreter, not warm (pipelines/warm.py)")
    args = parser.parse_args(argv)
    engine = Engine(warm=not args.cold_start)
    out = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    started = time.monotonic()
    if engine.warm:
        warm.start_server()  # it imports the libraries while the data is written
    data = make_data(out / "data")
    registry = out / "registry"
    common = {"epochs": args.epochs, "explain_images": args.explain_images,
              "registry": registry, "model_package_name": "digits"}
    stages, timings = [], []

    def timed(label: str, definition: str, params: dict, folder: str) -> RunResult:
        print(f"\n=== {label} ===", flush=True)
        t = time.monotonic()
        result = run(definition, params, out / "runs" / folder, engine)
        timings.append((label, time.monotonic() - t, result))
        return result

    v1 = timed("1. training pipeline on the original images", "training.yaml",
               {**common, "input_data": data["original"]}, "1-training")
    v1_dir = approve(registered_version(v1), registry)
    stages.append({"stage": "1. train v1 (original images)", "model": v1_dir.name,
                   "accuracy": evaluation_accuracy(v1), "drift": None, "p_value": None})

    # drift starts the training pipeline from inside the batch pipeline (its retrain step)
    retraining = {"retrain_input_data": data["original"],
                  "retrain_extra_data": data["labelled_shifted"], "retrain_epochs": args.retrain_epochs}

    def batch(label: str, images: Path, version: Path, folder: str) -> RunResult:
        """The batch pipeline is given no model: it takes the latest approved version."""
        result = timed(label, "batch_inference.yaml",
                       {"input_data": images, "registry": registry, "model_package_name": "digits",
                        "explain_images": args.explain_images, **retraining}, folder)
        if result.outputs("model")["version_dir"] != version:
            sys.exit(f"the batch pipeline used {result.outputs('model')['version_dir']},"
                     f" not the approved {version}")
        summary = batch_summary(result)
        retrain = next(s for s in result.steps if s.name == "retrain")
        stages.append({"stage": label, "model": version.name, "accuracy": summary["accuracy"],
                       "drift": summary["drift"]["drift"], "p_value": summary["drift"]["p_value"],
                       "report": summary, "retraining": f"{retrain.state}: {retrain.detail}"})
        return result

    batch("2. batch inference, clean held-out images", data["clean"], v1_dir, "2-clean")
    drifted = batch("3. batch inference, corrupted images", data["drifted"], v1_dir, "3-drifted")
    versions = [v1_dir]
    if "version_dir" in drifted.outputs("retrain"):
        v2_dir = drifted.outputs("retrain")["version_dir"]
        versions.append(v2_dir)
        stages.append({"stage": "4. retrained on drift: v2 (+ corrupted, from v1)",
                       "model": v2_dir.name,
                       "accuracy": read_accuracy(v2_dir / "model" / "evaluation.json"),
                       "drift": None, "p_value": None})
        again = batch("5. corrupted images again, v2 pending approval",
                      data["drifted"], v1_dir, "5-drifted-again")
        if "version_dir" in again.outputs("retrain"):
            sys.exit("the same drift episode started a second retraining: the guard failed")
        approve(v2_dir, registry)
        batch("6. v2 approved: batch inference, corrupted images", data["drifted"], v2_dir,
              "6-recovered")
    else:
        print(f"no retraining: {stages[-1]['retraining']}")
    tasks = None
    if args.label_studio_tasks:
        from labelling.tasks import export_tasks

        tasks = export_tasks(drifted.run_dir, out / "label-studio", how="drifted",
                             max_tasks=args.label_studio_tasks)
        print(f"\nLabel Studio tasks: {tasks['tasks']} drifted images pre-labelled by"
              f" {tasks['model_version']} in {out / 'label-studio'} (images served from"
              f" {tasks['document_root']}; see README, 'Humans in the loop')")
    report = write_report(out, stages, timings, versions, time.monotonic() - started)
    print(f"\n{'stage':<58}{'model':<7}{'accuracy':>9}{'drift':>7}{'p-value':>9}")
    for s in stages:
        print(f"{s['stage']:<58}{s['model']:<7}{_fmt(s['accuracy']):>9}{_fmt(s['drift']):>7}"
              f"{_fmt(s['p_value']):>9}")
    print(f"\nreport: {report}")
    return {"stages": stages, "report": report, "label_studio_tasks": tasks}


def _fmt(value, digits=4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def write_report(out: Path, stages: list[dict], timings: list, versions: list[Path],
                 total: float) -> Path:
    lines = ["# Demo report: the drift-retraining loop on the digits", "",
             "| stage | model | accuracy | drift | p-value |", "|---|---|---|---|---|"]
    for s in stages:
        lines.append(f"| {s['stage']} | {s['model']} | {_fmt(s['accuracy'])} |"
                     f" {_fmt(s['drift'])} | {_fmt(s['p_value'])} |")
    lines += ["", f"Total wall time {total:.0f} s.", "", "## Time per pipeline step", "",
              "| pipeline run | step | state | seconds |", "|---|---|---|---|"]
    for label, _, result in timings:
        for step in result.steps:
            lines.append(f"| {label} | {step.name} | {step.state} | {step.seconds:.1f} |")
    lines += ["", "## Retraining", ""]
    lines += [f"- {s['stage']}: {s['retraining']}" for s in stages if s.get("retraining")]
    lines += ["", "## Plots", ""]
    for version in versions:
        png = version / "evaluation" / "confusion_matrix.png"
        lines += [f"### {version.name}: confusion matrix (evaluation job, test split)", "",
                  f"![confusion matrix]({png})", ""]
    for label, _, result in timings:
        names = [s.name for s in result.steps]
        if "report" in names:
            summary = json.loads((result.outputs("report")["report"] / "report.json").read_text())
            drift = summary.get("drift") or {}
            if drift.get("plot"):
                lines += [f"### {label}: drift statistic", "", f"![drift]({drift['plot']})", ""]
            if summary.get("explanations_gallery"):
                lines += [f"Integrated-gradients gallery: [{summary['explanations_gallery']}]"
                          f"({summary['explanations_gallery']})", ""]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report


if __name__ == "__main__":
    main()
