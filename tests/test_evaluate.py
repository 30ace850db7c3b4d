"""`algorithm evaluate`: the evaluation Processing job the training pipeline's gate reads."""

import json

import numpy as np
import pytest

from algorithm.evaluate import compare_champion, mcnemar_worse_p
from algorithm.evaluation import predict
from algorithm.robustness import CORRUPTIONS, brightness, expected_calibration_error
from shared.data import ProcessedDataset
from shared.models import load_artifact
from tests.conftest import run_entrypoint


@pytest.fixture(scope="module")
def evaluated(trained_job, processed_small, tmp_path_factory):
    """The trained model evaluated on the test split, with itself as the champion."""
    base, _ = trained_job
    job = tmp_path_factory.mktemp("evaluate") / "opt_ml"
    inputs = job / "processing" / "input"
    inputs.mkdir(parents=True)
    (inputs / "model").symlink_to(base / "model")
    (inputs / "champion").symlink_to(base / "model")
    (inputs / "test").symlink_to(processed_small / "test")
    result = run_entrypoint("algorithm", "evaluate", base=job)
    assert result.returncode == 0, result.stderr[-3000:]
    out = job / "processing" / "output" / "evaluation"
    return json.loads((out / "evaluation.json").read_text()), out, base


def test_accuracy_is_the_models_own_on_the_test_set_in_sagemakers_layout(evaluated,
                                                                         processed_small):
    report, out, base = evaluated
    test = ProcessedDataset(processed_small / "test")
    predicted = predict(load_artifact(base / "model"), test).argmax(1)
    metrics = report["multiclass_classification_metrics"]
    assert metrics["accuracy"]["value"] == pytest.approx(float((predicted == test.labels).mean()))
    assert sum(sum(row.values()) for row in metrics["confusion_matrix"].values()) == len(test)
    assert report["images"] == len(test) and (out / "confusion_matrix.png").stat().st_size > 0
    assert 0 <= metrics["expected_calibration_error"]["value"] <= 1


def test_robustness_covers_every_corruption_with_its_severity_and_drop(evaluated):
    report, _, _ = evaluated
    clean = report["multiclass_classification_metrics"]["accuracy"]["value"]
    robustness = report["robustness"]
    assert list(robustness["corruptions"]) == list(CORRUPTIONS)
    for entry in robustness["corruptions"].values():
        assert entry["severity"] and 0 <= entry["accuracy"] <= 1
        assert entry["relative_drop"] == pytest.approx((clean - entry["accuracy"]) / clean)
    assert robustness["relative_drop"] == pytest.approx(
        np.mean([e["relative_drop"] for e in robustness["corruptions"].values()]))


def test_the_champion_is_measured_on_the_same_images(evaluated, processed_small):
    report, _, base = evaluated
    clean = report["multiclass_classification_metrics"]["accuracy"]["value"]
    assert report["champion"]["present"] and report["champion"]["accuracy"] == pytest.approx(clean)
    assert report["champion"]["passed"]  # as accurate as itself
    test = processed_small / "test"
    dataset = ProcessedDataset(test)
    correct = predict(load_artifact(base / "model"), dataset).argmax(1) == dataset.labels
    right = np.flatnonzero(correct)

    def candidate_missing(images: int, significance: float = 0.05) -> dict:
        """The champion's own answers but `images` of its right ones wrong."""
        candidate = correct.copy()
        candidate[right[:images]] = False
        return compare_champion(base / "model", test, candidate, 64, significance)

    one = candidate_missing(1)  # one image short: a coin toss, not a worse model
    assert one["passed"] and one["p_value"] == 0.5
    assert (one["images_only_champion_right"], one["images_only_candidate_right"]) == (1, 0)
    assert "within chance" in one["verdict"]
    strict = candidate_missing(1, significance=1.0)  # only at least as accurate passes
    assert not strict["passed"] and "worse" in strict["verdict"]
    worse = candidate_missing(6)  # six of six disagreements lost: p = 1/64
    assert not worse["passed"] and worse["p_value"] == pytest.approx(1 / 64)
    assert "<" in worse["verdict"] and "worse" in worse["verdict"]
    absent = compare_champion(base / "no-such-model", test, correct, 64, 0.05)
    assert absent == {"present": False, "passed": True, "verdict": "no champion: nothing to beat"}


def test_the_mcnemar_p_value_is_the_exact_binomial_tail():
    assert mcnemar_worse_p(0, 0) == 1.0  # no disagreement: nothing says the candidate is worse
    assert mcnemar_worse_p(1, 0) == 0.5
    assert mcnemar_worse_p(5, 0) == 1 / 32
    assert mcnemar_worse_p(3, 3) == 42 / 64  # C(6,3) + C(6,4) + C(6,5) + C(6,6) of 2^6
    assert mcnemar_worse_p(0, 4) == 1.0


def test_an_unlabelled_or_missing_test_set_fails_with_the_reason(trained_job, tmp_path):
    base, _ = trained_job
    job = tmp_path / "opt_ml"
    (job / "processing" / "input").mkdir(parents=True)
    (job / "processing" / "input" / "model").symlink_to(base / "model")
    result = run_entrypoint("algorithm", "evaluate", base=job)
    assert result.returncode != 0
    message = (job / "output" / "message").read_text()
    assert "processing/input/test" in message
    assert not (job / "processing" / "output" / "evaluation").exists()  # nothing half written


def test_corruptions_keep_shape_and_type_and_noise_is_seeded():
    images = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    for name, (corrupt, _) in CORRUPTIONS.items():
        out = corrupt(images, 3)
        assert out.shape == images.shape and out.dtype == np.uint8, name
        assert np.array_equal(out, corrupt(images, 3)), name
        assert not np.array_equal(out, images), name
    assert brightness(np.full((1, 2, 2, 3), 250, np.uint8)).max() == 255  # clipped, not wrapped


def test_expected_calibration_error_on_known_cases():
    labels = np.array([0, 1, 0, 1])
    certain_right = np.eye(2)[labels]
    assert expected_calibration_error(certain_right, labels) == 0.0
    # always 90% sure, right half the time: |0.5 - 0.9| in the one bin used
    sure = np.array([[0.9, 0.1]] * 4)
    assert expected_calibration_error(sure, labels) == pytest.approx(0.4)
