"""`algorithm evaluate`: a Processing job that measures a model on a processed test set.

Inputs: `model` (a model folder or model.tar.gz), `test` (a processed data set with labels) and,
optionally, `champion` (the model in use, measured on the same images). Output `evaluation`:
`evaluation.json` in SageMaker's multiclass model-quality layout, with three more sections the
training pipeline's gate reads:

- `robustness`: accuracy under each fixed corruption of `algorithm.robustness`, its drop relative
  to the clean accuracy, and the mean of those drops (`relative_drop`);
- `calibration`: expected calibration error over 15 confidence bins;
- `champion`: the champion's accuracy on the same images and whether the candidate passes
  (`passed`; true when there is no champion): it passes when it is at least as accurate, or when
  its shortfall is within chance by an exact one-sided McNemar test on the images the two models
  disagree about (p-value above `--champion-significance`, 0.05; 1 passes only a candidate at least
  as accurate). On a test set of a few hundred images, one image more or less is noise: a
  retraining must not be held back for it, but a truly worse model still is.

plus `confusion_matrix.png`. Every figure is computed from this job's own predictions.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from algorithm.evaluation import multiclass_report, plot_confusion_matrix, predict
from algorithm.robustness import CORRUPTIONS, expected_calibration_error
from shared.atomic import published_folder, write_json_atomic
from shared.evaluation import accuracy_of
from shared.model_inputs import open_data, open_model
from shared.sagemaker import JobError, load_processing_context

log = logging.getLogger(__name__)
CALIBRATION_BINS = 15


def evaluate(flags: Any) -> dict[str, Any]:
    """Run the job with `flags` (algorithm.__main__.EvaluateFlags); returns evaluation.json's content."""
    started = time.monotonic()
    paths = load_processing_context().paths
    model_path = flags.model or paths.processing_input("model")
    test_path = flags.test or paths.processing_input("test")
    champion_path = flags.champion or paths.processing_input("champion")
    classifier = open_model(model_path)
    inputs = open_data(test_path, classifier.config, exact_classes=False)
    if not inputs.labelled:
        raise JobError(f"the test set {test_path} has unlabelled images: evaluation needs a class"
                       " for every image (process a labelled ImageFolder)")
    data, labels = inputs.data, inputs.labels
    names = classifier.config.class_names
    log.info("evaluating %s on %d images of %s", model_path, len(labels), test_path)

    # the test set is read a batch at a time, once per pass: memory does not grow with it
    probabilities = predict(classifier, data, flags.batch_size)
    predicted = probabilities.argmax(1)
    report = multiclass_report(labels, predicted, names)
    accuracy = accuracy_of(report)
    ece = expected_calibration_error(probabilities, labels, CALIBRATION_BINS)
    report["multiclass_classification_metrics"]["expected_calibration_error"] = {
        "value": ece, "standard_deviation": "NaN"}
    corruptions = {}
    for name, (corrupt, severity) in CORRUPTIONS.items():
        # noise seeded by the batch's first row: batches differ, a rerun repeats the figures
        corrupted = predict(classifier, data, flags.batch_size,
                            lambda images, start, c=corrupt: c(images, flags.seed + start))
        score = float((corrupted.argmax(1) == labels).mean())
        drop = (accuracy - score) / accuracy if accuracy > 0 else 0.0
        corruptions[name] = {"severity": severity, "accuracy": score, "relative_drop": drop}
        log.info("%s (%s): accuracy %.4f, relative drop %.4f", name, severity, score, drop)
    report["robustness"] = {
        "corruptions": corruptions,
        "mean_accuracy": float(np.mean([c["accuracy"] for c in corruptions.values()])),
        "relative_drop": float(np.mean([c["relative_drop"] for c in corruptions.values()])),
        "worst_relative_drop": max(c["relative_drop"] for c in corruptions.values()),
    }
    report["calibration"] = {"expected_calibration_error": ece, "bins": CALIBRATION_BINS}
    report["champion"] = compare_champion(champion_path, test_path, predicted == labels,
                                          flags.batch_size, flags.champion_significance)
    report.update({"evaluated_on": "test", "images": len(labels), "model": str(model_path),
                   "seconds": time.monotonic() - started})
    with published_folder(flags.output or paths.processing_output("evaluation")) as staged:
        write_json_atomic(staged / "evaluation.json", report)
        plot_confusion_matrix(report, staged / "confusion_matrix.png",
                              f"test accuracy {accuracy:.3f}")
    log.info("accuracy %.4f, robustness relative drop %.4f, ECE %.4f, champion: %s", accuracy,
             report["robustness"]["relative_drop"], ece, report["champion"]["verdict"])
    return report


def compare_champion(path: Path, test_path: Path, correct: np.ndarray, batch_size: int,
                     significance: float) -> dict[str, Any]:
    """The champion's accuracy on the same test images, when one is given, and the verdict on
    the candidate, whose per-image correctness is `correct` (in the test set's order)."""
    if not Path(path).exists():
        return {"present": False, "passed": True, "verdict": "no champion: nothing to beat"}
    champion = open_model(Path(path))
    data = open_data(test_path, champion.config, exact_classes=False)  # its own class order
    champion_correct = predict(champion, data.data, batch_size).argmax(1) == data.labels
    accuracy, score = float(correct.mean()), float(champion_correct.mean())
    losses = int((~correct & champion_correct).sum())  # images only the champion gets right
    wins = int((correct & ~champion_correct).sum())
    p_value = mcnemar_worse_p(losses, wins)
    passed = accuracy >= score or p_value > significance
    verdict = f"candidate {accuracy:.4f} {'>=' if accuracy >= score else '<'} champion {score:.4f}"
    if accuracy < score:
        verdict += (f" ({losses} of the images they disagree about only the champion gets right,"
                    f" {wins} only the candidate:"
                    f" p = {p_value:.3g} {'>' if passed else '<='} {significance:g},"
                    f" {'within chance' if passed else 'worse'})")
    return {"present": True, "model": str(path), "accuracy": score, "passed": passed,
            "images_only_champion_right": losses, "images_only_candidate_right": wins,
            "p_value": p_value, "significance": significance, "verdict": verdict}


def mcnemar_worse_p(losses: int, wins: int) -> float:
    """Exact one-sided McNemar p-value: the chance of `losses` or more among the discordant images
    if each were a fair coin between the two models (a binomial tail; no SciPy in the image)."""
    n = losses + wins
    return sum(math.comb(n, k) for k in range(losses, n + 1)) / 2 ** n
