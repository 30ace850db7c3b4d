"""The training job through `python -m algorithm train`, as SageMaker runs it."""

import json
import re
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from shared.models import load_artifact, read_safetensors_state, write_tarball
from tests.conftest import TRAIN_HYPERPARAMETERS, run_entrypoint, training_job, write_json

EPOCH_LINE = re.compile(r"^epoch=(\d+) train_loss=[\d.]+ train_accuracy=[\d.]+ val_loss=[\d.]+"
                        r" val_nll=[\d.]+ val_accuracy=([\d.]+) lr=[\d.]+$", re.M)


def evaluation(base):
    return json.loads((base / "model" / "evaluation.json").read_text())


def test_trains_the_digits_to_high_test_accuracy(trained_job):
    base, result = trained_job
    report = evaluation(base)
    metrics = report["multiclass_classification_metrics"]
    assert report["evaluated_on"] == "test" and report["passed"] is True
    assert metrics["accuracy"]["value"] >= 0.95
    for key in ("weighted_precision", "weighted_recall", "weighted_f1"):
        assert 0.9 <= metrics[key]["value"] <= 1.0
    matrix = metrics["confusion_matrix"]
    assert sum(sum(row.values()) for row in matrix.values()) == report["images"] == 269
    assert set(metrics["per_class"]) == {str(d) for d in range(10)}
    assert (base / "output" / "data" / "evaluation.json").read_text() == (
        base / "model" / "evaluation.json").read_text()


def test_writes_a_loadable_artifact_with_classes_size_and_normalisation(trained_job):
    base, _ = trained_job
    config = load_artifact(base / "model").config
    assert config.architecture == "resnet10t" and config.class_names == [str(d) for d in range(10)]
    assert config.input_size == 32 and len(config.mean) == 3
    assert not any(p.suffix in (".pt", ".pth", ".ckpt") for p in (base / "model").iterdir())


def test_logs_one_parseable_line_per_epoch_tensorboard_csv_and_plot(trained_job):
    base, result = trained_job
    epochs = EPOCH_LINE.findall(result.stdout)
    assert [int(e) for e, _ in epochs] == [1, 2, 3, 4]
    csv_lines = (base / "output" / "data" / "metrics.csv").read_text().strip().splitlines()
    assert csv_lines[0].startswith("epoch,train_loss") and len(csv_lines) == 5
    assert list((base / "output" / "tensorboard").rglob("events.out.tfevents.*"))
    with Image.open(base / "output" / "data" / "confusion_matrix.png") as image:
        assert image.size[0] > 200
    assert (base / "checkpoints" / "last.ckpt").exists()
    assert not (base / "output" / "failure").exists()


def test_two_process_ddp_on_cpu_trains_and_only_rank_zero_writes(processed_small, tmp_path):
    base = training_job(tmp_path / "opt_ml", processed_small,
                        {**TRAIN_HYPERPARAMETERS, "epochs": "1", "processes_per_host": "2",
                         "accuracy_threshold": "1.0"})
    result = run_entrypoint("algorithm", "train", base=base)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in result.stderr
    assert len(EPOCH_LINE.findall(result.stdout)) == 1  # printed by rank 0 only
    assert result.stdout.count('"evaluation"') == 1
    assert sorted(p.name for p in (base / "model").iterdir()) == [
        "evaluation.json", "model.json", "model.safetensors"]
    report = evaluation(base)
    assert report["accuracy_threshold"] == 1.0
    assert report["passed"] is (report["multiclass_classification_metrics"]["accuracy"]["value"]
                                >= 1.0)


def test_bf16_on_a_cpu_trains_in_channels_last_and_writes_a_float32_artifact(processed_small,
                                                                            tmp_path):
    """The default on CPUs with AMX (algorithm/train.py); asked for here, so that every CPU runs
    it: safetensors refuses channels-last weights, so the artifact must be put back."""
    base = training_job(tmp_path / "opt_ml", processed_small,
                        {**TRAIN_HYPERPARAMETERS, "epochs": "1", "precision": "bf16-mixed"})
    result = run_entrypoint("algorithm", "train", base=base)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "precision bf16-mixed on cpu, channels last" in result.stderr
    weights = read_safetensors_state(base / "model" / "model.safetensors")
    assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.float32}
    assert all(t.is_contiguous() for t in weights.values())
    classifier = load_artifact(base / "model")
    assert classifier.logits(np.zeros((2, 32, 32, 3), np.uint8)).shape == (2, 10)


def test_warm_start_from_a_model_tarball_starts_from_its_weights(trained_job, processed_small,
                                                                 tmp_path):
    trained_base, _ = trained_job
    base = training_job(tmp_path / "opt_ml", processed_small,
                        {**TRAIN_HYPERPARAMETERS, "epochs": "1", "learning_rate": "0.0001"},
                        ("train", "validation"))
    write_tarball(trained_base / "model", base / "input" / "data" / "model" / "model.tar.gz")
    result = run_entrypoint("algorithm", "train", base=base)
    assert result.returncode == 0, result.stderr[-3000:]
    (_, val_accuracy), = EPOCH_LINE.findall(result.stdout)
    assert float(val_accuracy) >= 0.95  # from random weights one epoch gives far less


def test_warm_start_with_other_classes_needs_reinitialize_head(trained_job, tmp_path):
    from shared.data import DatasetWriter, ProcessedDataset

    trained_base, _ = trained_job
    source = ProcessedDataset(trained_base / "input" / "data" / "validation")
    processed = tmp_path / "three_classes"
    for split in ("train", "validation"):
        writer = DatasetWriter(processed / split, 32, classes=["0", "1", "2"])
        for i in range(len(source)):
            image, label, image_id = source[i]
            if label < 3:
                writer.add(image, image_id, image_id, str(label))
        writer.commit({})
    hp = {**TRAIN_HYPERPARAMETERS, "epochs": "1"}
    base = training_job(tmp_path / "opt_ml", processed, hp, ("train", "validation"))
    (base / "input" / "data" / "model").symlink_to(trained_base / "model")
    refused = run_entrypoint("algorithm", "train", base=base)
    assert refused.returncode != 0
    assert "reinitialize_head=true" in (base / "output" / "failure").read_text()
    write_json(base / "input" / "config" / "hyperparameters.json",
               {**hp, "reinitialize_head": "true"})
    accepted = run_entrypoint("algorithm", "train", base=base)
    assert accepted.returncode == 0, accepted.stderr[-3000:]
    assert load_artifact(base / "model").config.class_names == ["0", "1", "2"]


@pytest.mark.parametrize("case,expected", [
    ("no_train", "the 'train' channel is missing"),
    ("unknown_hp", "unknown hyperparameter(s): optimiser (did you mean optimizer?)"),
    ("bad_choice", "lr_scheduler='linear' is not allowed; valid choices: none, cosine, step"),
    ("bad_model", "unknown timm architecture 'resnet_10t'"),
    ("class_mismatch", "class lists differ between channels"),
    ("lr_finder_ddp", "lr_finder=true runs in one training process"),
])
def test_bad_input_fails_with_a_reason_in_output_failure(processed_small, tmp_path, case,
                                                         expected):
    hp = dict(TRAIN_HYPERPARAMETERS)
    channels = ("train", "validation")
    if case == "no_train":
        channels = ("validation",)
    if case == "unknown_hp":
        hp["optimiser"] = "adam"
    if case == "bad_choice":
        hp["lr_scheduler"] = "linear"
    if case == "bad_model":
        hp["model_name"] = "resnet_10t"
    if case == "lr_finder_ddp":
        hp.update(lr_finder="true", processes_per_host="2")
    base = training_job(tmp_path / "opt_ml", processed_small, hp, channels)
    if case == "class_mismatch":
        classes = base / "input" / "data" / "validation"
        copy = tmp_path / "validation_copy"
        subprocess.run(["cp", "-rL", str(classes), str(copy)], check=True)
        (copy / "classes.json").write_text(json.dumps([f"c{i}" for i in range(10)]))
        classes.unlink()
        classes.symlink_to(copy)
    result = run_entrypoint("algorithm", "train", base=base)
    assert result.returncode != 0
    assert expected in (base / "output" / "failure").read_text()
    assert not (base / "model" / "model.json").exists()


def test_the_learning_rate_finder_sweeps_plots_and_trains_at_its_suggestion(processed_small,
                                                                            tmp_path):
    hp = {**TRAIN_HYPERPARAMETERS, "epochs": "1", "lr_finder": "true", "lr_finder_steps": "30"}
    base = training_job(tmp_path / "opt_ml", processed_small, hp)
    result = run_entrypoint("algorithm", "train", base=base)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((base / "output" / "data" / "lr_finder.json").read_text())
    assert 5 <= record["steps"] <= 30 and record["lr"] == sorted(record["lr"])
    assert record["suggestion"] is not None and 1e-6 <= record["used"] <= 1.0
    assert record["used"] == record["suggestion"]
    assert (base / "output" / "data" / "lr_finder.png").read_bytes()[:4] == b"\x89PNG"
    assert f"training at {record['used']:.3g}" in result.stderr

    def initial_rate() -> float:  # what the optimiser was built with (the schedule's peak)
        state = torch.load(base / "checkpoints" / "last.ckpt", weights_only=True)
        return state["optimizer_states"][0]["param_groups"][0]["initial_lr"]

    assert initial_rate() == pytest.approx(record["used"])
    # a resumed job trains on at the rate found before, without sweeping again
    write_json(base / "input" / "config" / "hyperparameters.json", {**hp, "epochs": "2"})
    resumed = run_entrypoint("algorithm", "train", base=base)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming with the rate found before" in resumed.stderr
    assert initial_rate() == pytest.approx(record["used"])


def test_auto_precision_is_bf16_on_cpus_with_amx_only(monkeypatch):
    from algorithm import train
    from shared.sagemaker import JobError
    for amx, expected in ((True, "bf16-mixed"), (False, "32-true")):
        monkeypatch.setattr(train, "cpu_has_amx", lambda amx=amx: amx)
        assert train.lightning_precision("auto", gpus=False) == expected
        assert train.lightning_precision("32", gpus=False) == "32-true"
        assert train.channels_last(expected, "cpu") is (expected == "bf16-mixed")
    assert not train.channels_last("bf16-mixed", "gpu")
    with pytest.raises(JobError, match="16-mixed needs a GPU"):
        train.lightning_precision("16-mixed", gpus=False)
