"""The demo's full loop on a reduced configuration: drift only where the data drifted, and
accuracy recovering after drift-triggered retraining."""

import json

import numpy as np
import pytest

from pipelines import demo


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    result = demo.main(["--out", str(out), "--epochs", "3", "--explain-images", "8",
                        "--label-studio-tasks", "15"])
    return out, {s["stage"][:2]: s for s in result["stages"]}, result["report"]


def test_clean_held_out_images_show_no_drift_and_high_accuracy(demo_run):
    _, stages, _ = demo_run
    clean = stages["2."]
    assert clean["drift"] is False and clean["p_value"] > 0.05
    assert clean["accuracy"] >= 0.9


def test_corrupted_images_show_drift_and_an_accuracy_drop(demo_run):
    _, stages, _ = demo_run
    assert stages["3."]["drift"] is True and stages["3."]["p_value"] <= 0.05
    assert stages["3."]["accuracy"] <= stages["2."]["accuracy"] - 0.2


def test_retraining_with_labelled_drifted_data_recovers_accuracy(demo_run):
    out, stages, _ = demo_run
    assert stages["4."]["model"] == "v2" and stages["1."]["model"] == "v1"
    assert stages["6."]["accuracy"] >= stages["3."]["accuracy"] + 0.2
    assert stages["6."]["accuracy"] >= 0.8
    registry = out / "registry" / "digits"
    assert sorted(p.name for p in registry.glob("v*")) == ["v1", "v2"]
    meta = json.loads((registry / "v2" / "metadata.json").read_text())
    assert meta["version"] == 2 and (registry / "v2" / "detector" / "detector.json").exists()
    assert (registry / "v2" / "model" / "drift" / "detector.json").exists()  # served online
    assert meta["approval_status"] == "Approved"  # approved by the demo, then used by stage 6
    assert [h["status"] for h in meta["approval_history"]] == ["PendingManualApproval", "Approved"]
    assert meta["warm_start"] == str((registry / "v1" / "model").resolve())
    used = json.loads((out / "runs" / "6-recovered" / "model" / "status.json").read_text())
    assert used["outputs"]["version_dir"] == str(registry.resolve() / "v2")


def test_drift_starts_one_retraining_and_the_loop_converges(demo_run):
    """The batch pipeline's own retrain step: drift on the corrupted batch retrains once; the same
    batch again while v2 waits starts nothing; against v2's reference the batch is not drift."""
    out, stages, _ = demo_run
    assert stages["2."]["retraining"].startswith("skipped")  # no drift, no retraining
    assert stages["3."]["drift"] and "retrained: registered" in stages["3."]["retraining"]
    assert (out / "runs" / "3-drifted" / "retrain" / "run" / "summary.json").exists()
    assert stages["5."]["drift"] is True
    assert stages["5."]["retraining"].startswith("condition-false: v2, retrained from the model")
    assert "PendingManualApproval" in stages["5."]["retraining"]
    assert stages["6."]["drift"] is False and stages["6."]["p_value"] > 0.05
    assert stages["6."]["retraining"].startswith("skipped")


def test_report_has_the_stage_table_and_plots(demo_run):
    _, stages, report = demo_run
    text = report.read_text()
    assert "| stage | model | accuracy | drift | p-value |" in text
    assert f"{stages['3.']['accuracy']:.4f}" in text
    assert "confusion_matrix.png" in text and "drift" in text and "index.html" in text


def test_the_demo_ends_with_the_drifted_images_as_pre_labelled_label_studio_tasks(demo_run):
    out, _, _ = demo_run
    tasks = json.loads((out / "label-studio" / "tasks.json").read_text())
    assert len(tasks) == 15
    predictions = {}
    for line in (out / "runs" / "3-drifted" / "report" / "output" / "predictions.jsonl"
                 ).read_text().splitlines():
        row = json.loads(line)
        predictions[row["id"]] = row
    report = out / "runs" / "3-drifted" / "drift" / "opt_ml" / "processing" / "output" / "report"
    drift = json.loads((report / "drift.json").read_text())
    assert drift["drift"] and drift["windows_with_drift"]
    names = [str(n) for n in np.load(report / "features.npz")["names"]]
    drifted = {n for w in drift["windows"] if w["drift"] for n in names[w["start"]:w["end"]]}
    for task in tasks:
        image_id = task["data"]["image_id"]
        assert task["data"]["image"] == f"/data/local-files/?d={image_id}"
        assert (out / "data" / "production-drifted" / image_id).is_file()  # the document root
        [prediction] = task["predictions"]
        assert prediction["model_version"] == "digits-v1"
        assert prediction["result"][0]["value"]["choices"] == [predictions[image_id]["prediction"]]
        assert prediction["score"] == predictions[image_id]["probability"]
        assert image_id in drifted
    scores = [t["predictions"][0]["score"] for t in tasks]
    chosen = {t["data"]["image_id"] for t in tasks}
    assert scores == sorted(scores) and max(scores) <= min(  # the least confident drifted ones
        predictions[n]["probability"] for n in drifted - chosen)
    assert "<Choice value=\"9\"/>" in (out / "label-studio" / "label_config.xml").read_text()
