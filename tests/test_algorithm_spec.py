"""`python -m pipelines algorithm-spec`: a CreateAlgorithm request that SageMaker's own API model
accepts, built from the image's declarations, with metric definitions that read real training
logs."""

import json
import re

import pytest

from algorithm.hyperparameters import Hyperparameters
from algorithm.serve.codecs import ACCEPT_TYPES, CONTENT_TYPES
from pipelines.__main__ import main
from shared.schema import fields_of
from tests.sagemaker_api import request_errors

URI = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-image-mlops-algorithm:0123abcd"


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    folder = tmp_path_factory.mktemp("spec")
    (folder / "image-uris.json").write_text(json.dumps({"algorithm": URI, "processing": "x"}))
    assert main(["algorithm-spec", "--images", str(folder / "image-uris.json"),
                 "--out", str(folder / "algorithm.json")]) == 0
    return json.loads((folder / "algorithm.json").read_text())


def test_the_request_is_valid_for_sagemakers_api_model(spec):
    assert request_errors(spec, "CreateAlgorithm") == []
    assert spec["TrainingSpecification"]["TrainingImage"] == URI
    assert spec["InferenceSpecification"]["Containers"] == [{"Image": URI}]


def test_every_declared_hyperparameter_is_offered_with_its_default_and_range(spec):
    offered = {h["Name"]: h for h in spec["TrainingSpecification"]["SupportedHyperParameters"]}
    assert list(offered) == [f.name for f, _ in fields_of(Hyperparameters)]
    assert offered["epochs"]["Type"] == "Integer" and offered["epochs"]["DefaultValue"] == str(
        Hyperparameters().epochs)
    assert offered["learning_rate"]["Range"] == {"ContinuousParameterRangeSpecification": {
        "MinValue": "0.0", "MaxValue": "10.0"}}
    assert offered["optimizer"]["Range"]["CategoricalParameterRangeSpecification"]["Values"] == [
        "adam", "adamw", "sgd", "rmsprop"]
    assert offered["online_augmentation"]["Range"][
        "CategoricalParameterRangeSpecification"]["Values"] == ["true", "false"]
    assert "DefaultValue" not in offered["pretrained_weights"]  # optional, no default
    tunable = {name for name, h in offered.items() if h["IsTunable"]}
    assert {"learning_rate", "batch_size", "optimizer", "epochs"} <= tunable
    assert not {"seed", "num_workers", "precision", "model_name"} & tunable
    assert all("Range" in offered[name] for name in tunable)


def test_content_types_and_objectives_are_the_images_own(spec):
    inference = spec["InferenceSpecification"]
    assert inference["SupportedContentTypes"] == list(CONTENT_TYPES)
    assert inference["SupportedResponseMIMETypes"] == list(ACCEPT_TYPES)
    training = spec["TrainingSpecification"]
    names = {m["Name"] for m in training["MetricDefinitions"]}
    assert {o["MetricName"] for o in training["SupportedTuningJobObjectiveMetrics"]} <= names
    assert [c["Name"] for c in training["TrainingChannels"] if c["IsRequired"]] == [
        "train", "validation"]


def test_metric_definitions_read_the_values_a_real_training_job_logs(spec, trained_job):
    base, result = trained_job
    log = result.stdout + result.stderr
    history = (base / "output" / "data" / "metrics.csv").read_text().splitlines()
    last = dict(zip(history[0].split(","), history[-1].split(","), strict=True))
    evaluation = json.loads((base / "model" / "evaluation.json").read_text())
    found = {}
    for metric in spec["TrainingSpecification"]["MetricDefinitions"]:
        values = [float(m) for m in re.findall(metric["Regex"], log)]  # as SageMaker scans
        assert values, f"{metric['Name']} matches no line of the training log"
        found[metric["Name"]] = values
    epochs = len(history) - 1
    assert len(found["validation:accuracy"]) == epochs
    assert found["validation:accuracy"][-1] == pytest.approx(float(last["val_accuracy"]), abs=1e-4)
    assert found["train:loss"][-1] == pytest.approx(float(last["train_loss"]), abs=1e-4)
    assert found["validation:nll"][-1] == pytest.approx(float(last["val_nll"]), abs=1e-4)
    assert found["learning_rate"][-1] == pytest.approx(float(last["lr"]), abs=1e-6)
    assert found["test:accuracy"] == [pytest.approx(
        evaluation["multiclass_classification_metrics"]["accuracy"]["value"], abs=1e-4)]


def test_a_map_without_the_algorithm_image_is_refused(tmp_path, capsys):
    (tmp_path / "uris.json").write_text(json.dumps({"processing": "x"}))
    assert main(["algorithm-spec", "--images", str(tmp_path / "uris.json"),
                 "--out", str(tmp_path / "a.json")]) == 2
    assert "names no algorithm image (it has: processing)" in capsys.readouterr().err
    assert not (tmp_path / "a.json").exists()
