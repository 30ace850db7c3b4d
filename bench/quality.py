"""Model quality on small real data: the default training pipeline against pixel baselines.

For each data set of bench/quality_data.py (digits, faces, textures, scenes), in one run:
- the training pipeline with every parameter at its default (`python -m pipelines run
  pipelines/training.yaml --param input_data=...`, nothing hand-set), scored by its own evaluate
  step on the test split;
- logistic regression and an RBF-SVM (scikit-learn defaults, standardised raw pixels) fitted on
  the same train and validation images and scored on the same test split.
Side A is the best baseline's test accuracy, side B the pipeline's; the target is B ahead of A by
2% (digits: not behind, and at least 0.99). Macro-F1 and times are in the notes.
Run: .venv/bin/python -m bench.quality [--quick] [--json PATH]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import Comparison, finish, parser
from bench.quality_data import DATASETS, as_arrays, write

ROOT = Path(__file__).resolve().parent.parent
MARGIN = 1.02  # ahead of the best baseline by 2% of its accuracy
DIGITS_FLOOR = 0.99


def macro_f1(confusion: np.ndarray) -> float:
    """Unweighted mean of the per-class F1 scores (rows: true class, columns: predicted)."""
    true_pos = np.diag(confusion).astype(float)
    precision = np.divide(true_pos, confusion.sum(0), out=np.zeros_like(true_pos),
                          where=confusion.sum(0) > 0)
    recall = np.divide(true_pos, confusion.sum(1), out=np.zeros_like(true_pos),
                       where=confusion.sum(1) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(true_pos),
                   where=precision + recall > 0)
    return float(f1.mean())


def baselines(parts: dict[str, dict[str, list]]) -> dict[str, dict[str, float]]:
    """{name: {accuracy, macro_f1, seconds}} of the pixel baselines on the test split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import confusion_matrix
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    labels = sorted(parts["train"])
    fit_x, fit_y = as_arrays({c: parts["train"][c] + parts["validation"][c] for c in labels}, labels)
    test_x, test_y = as_arrays(parts["test"], labels)
    out = {}
    for name, model in (("logistic regression", LogisticRegression(max_iter=5000)),
                        ("RBF-SVM", SVC())):
        started = time.monotonic()
        predicted = make_pipeline(StandardScaler(), model).fit(fit_x, fit_y).predict(test_x)
        out[name] = {"accuracy": float((predicted == test_y).mean()),
                     "macro_f1": macro_f1(confusion_matrix(test_y, predicted)),
                     "seconds": time.monotonic() - started}
    return out


def run_default_pipeline(data: Path, work: Path) -> tuple[Path, float]:
    """(run folder, wall seconds) of the training pipeline, every parameter at its default."""
    run_dir = work / "run"
    command = [sys.executable, "-m", "pipelines", "run", str(ROOT / "pipelines/training.yaml"),
               "--param", f"input_data={data}", "--param", f"registry={work / 'registry'}",
               "--run-dir", str(run_dir)]
    started = time.monotonic()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if not json.loads((run_dir / "summary.json").read_text())["ok"]:
        raise RuntimeError(f"the training pipeline failed on {data}:\n{proc.stdout[-2000:]}")
    return run_dir, seconds


def trained_model(run_dir: Path) -> Path:
    return run_dir / "train" / "opt_ml" / "model"


def default_pipeline(data: Path, work: Path) -> dict[str, float]:
    """{accuracy, macro_f1, train_seconds, seconds} of the default training pipeline on `data`,
    from its own evaluate step."""
    run_dir, seconds = run_default_pipeline(data, work)
    evaluation = json.loads(next(run_dir.glob("evaluate/**/evaluation.json")).read_text())
    metrics = evaluation["multiclass_classification_metrics"]
    confusion = metrics["confusion_matrix"]
    names = list(confusion)
    matrix = np.array([[confusion[t][p] for p in names] for t in names])
    summary = json.loads((run_dir / "summary.json").read_text())
    train = next(s for s in summary["steps"] if s["name"] == "train")
    return {"accuracy": metrics["accuracy"]["value"], "macro_f1": macro_f1(matrix),
            "train_seconds": train["seconds"], "seconds": seconds}


def compare(name: str, pipeline: dict[str, float], base: dict[str, dict[str, float]],
            sizes: dict[str, int]) -> Comparison:
    best = max(base, key=lambda b: base[b]["accuracy"])
    digits = name == "digits"
    c = Comparison(
        bench="quality", title=f"Quality: {name}, default pipeline vs best pixel baseline",
        workload=f"{name}: {sizes['train']} train / {sizes['validation']} validation /"
                 f" {sizes['test']} test images (bench/quality_data.py), test accuracy",
        side_a=f"{best} on pixels", a=base[best]["accuracy"],
        side_b="default training pipeline", b=pipeline["accuracy"], unit="accuracy",
        target=1.0 if digits else MARGIN,
        checks={f"accuracy >= {DIGITS_FLOOR}": pipeline["accuracy"] >= DIGITS_FLOOR} if digits else {})
    c.notes.append(f"pipeline: accuracy {pipeline['accuracy']:.4f}, macro-F1"
                   f" {pipeline['macro_f1']:.4f}, train step {pipeline['train_seconds']:.1f} s,"
                   f" whole pipeline {pipeline['seconds']:.1f} s")
    c.notes += [f"{b}: accuracy {r['accuracy']:.4f}, macro-F1 {r['macro_f1']:.4f}, fit and predict"
                f" {r['seconds']:.2f} s" for b, r in base.items()]
    c.notes.append(f"gap to the best baseline: {pipeline['accuracy'] - c.a:+.4f}")
    return c


def measure(names: list[str]) -> list[Comparison]:
    comparisons = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            work = Path(tmp) / name
            parts = write(name, work / "data")
            sizes = {part: sum(len(v) for v in classes.values()) for part, classes in parts.items()}
            print(f"--- {name}: {sizes}", flush=True)
            comparisons.append(compare(name, default_pipeline(work / "data", work),
                                       baselines(parts), sizes))
    return comparisons


def main() -> None:
    args = parser(__doc__, "faces only").parse_args()
    finish(args, measure(["faces"] if args.quick else list(DATASETS)))


if __name__ == "__main__":
    main()
