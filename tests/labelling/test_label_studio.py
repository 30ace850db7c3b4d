"""The human-in-the-loop path against a real Label Studio server: a drifted batch run's images
become pre-labelled tasks, Label Studio asks the suite's ML backend for predictions, people's
annotations reach the backend's webhook, and past its threshold the backend retrains through the
training pipeline; the export also imports by hand into an ImageFolder.

Run by `make test-labelling` (it installs Label Studio in its own environment); not in `make test`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipelines import demo
from pipelines.registry import PENDING, Registry
from tests.labelling.conftest import start_backend, start_label_studio
from tests.serving import stop_process, wait_until

TASKS = 20  # pre-labelled by the batch run
LABELLED, AMBIGUOUS, CANCELLED = 10, 1, 1  # the people's annotations
THRESHOLD = LABELLED + 2 * AMBIGUOUS + CANCELLED  # annotation events: the last one starts training


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    """v1 trained on the digits and approved; a batch run on visibly corrupted digits (drift)."""
    out = tmp_path_factory.mktemp("loop")
    data = demo.make_data(out / "data")
    registry = out / "registry"
    common = {"registry": registry, "model_package_name": "digits", "explain_images": 4}
    trained = demo.run("training.yaml", {**common, "input_data": data["original"], "epochs": 3},
                       out / "runs" / "train")
    v1 = demo.approve(demo.registered_version(trained), registry)
    batch = demo.run("batch_inference.yaml", {**common, "input_data": data["drifted"]},
                     out / "runs" / "batch")
    predictions = {}
    for line in (batch.outputs("report")["report"] / "predictions.jsonl").read_text().splitlines():
        row = json.loads(line)
        predictions[row["id"]] = row
    return SimpleNamespace(out=out, data=data, registry=registry, v1=v1, batch=batch.run_dir,
                           predictions=predictions)


def labelling(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labelling", *args], capture_output=True,
                          text=True, timeout=600)


def choice(result: list[dict]) -> str:
    return result[0]["value"]["choices"][0]


def test_drifted_images_go_to_label_studio_and_their_labels_retrain_the_model(loop):
    tasks_dir = loop.out / "tasks"
    done = labelling("export-tasks", str(loop.batch), "--out", str(tasks_dir), "--select",
                     "drifted", "--max-tasks", str(TASKS + 4))
    assert done.returncode == 0, done.stderr
    tasks = json.loads((tasks_dir / "tasks.json").read_text())
    assert len(tasks) == TASKS + 4
    scores = [t["predictions"][0]["score"] for t in tasks]
    assert scores == sorted(scores)  # least confident first

    label_studio, server = start_label_studio(loop.out / "label-studio", loop.data["drifted"])
    backend_log = loop.out / "backend.log"
    url, backend = start_backend(
        ["--model", str(loop.v1 / "model"), "--document-root", str(loop.data["drifted"]),
         "--train-data", str(loop.data["original"]), "--work-dir", str(loop.out / "backend"),
         # as many epochs as v1 had. The candidate may still miss an image or two v1 gets right
         # (one of 190 on an AMX Xeon): the gate's McNemar test lets that pass as chance
         "--threshold", str(THRESHOLD), "--param", "epochs=3", "--param", "explain_images=4",
         "--param", f"registry={loop.registry}", "--param", "model_package_name=digits"],
        backend_log)
    try:
        project = label_studio.sdk("project", title="drifted digits", label_config=(
            tasks_dir / "label_config.xml").read_text())["id"]
        pre_labelled = label_studio.sdk("import_tasks", project=project,
                                        tasks=tasks[:TASKS])["task_ids"]
        # the ML backend: Label Studio checks its health, sets it up, then asks it for predictions
        assert label_studio.sdk("connect", project=project, url=url)["state"] == "CO"
        bare = label_studio.sdk("import_tasks", project=project,
                                tasks=[{"data": t["data"]} for t in tasks[TASKS:]])["task_ids"]
        label_studio.sdk("retrieve", project=project, task_ids=bare)
        stored = {t["id"]: t for t in label_studio.sdk("tasks", project=project)["tasks"]}
        for task_id, task in zip(pre_labelled + bare, tasks, strict=True):
            [prediction] = stored[task_id]["predictions"]
            batch = loop.predictions[task["data"]["image_id"]]
            assert prediction["model_version"] == "digits-v1"
            # the backend predicts as the Batch Transform did: same model, same preprocessing
            assert choice(prediction["result"]) == batch["prediction"]
            assert prediction["score"] == pytest.approx(batch["probability"], abs=1e-4)

        # people label: the true class (its folder), one task cancelled, one in dispute
        truth = {i: stored[i]["data"]["image_id"].split("/")[0] for i in pre_labelled}
        disputed, cancelled, *labelled = pre_labelled[:2 + LABELLED]
        other = next(c for c in map(str, range(10)) if c != truth[disputed])
        label_studio.sdk("annotate", annotations=[
            {"task": disputed, "label": truth[disputed]}, {"task": disputed, "label": other},
            {"task": cancelled, "label": None, "cancelled": True},
            *({"task": i, "label": truth[i]} for i in labelled)])

        state_file = loop.out / "backend" / "state.json"

        def finished() -> bool:
            if not state_file.is_file():
                return False
            trainings = json.loads(state_file.read_text())["trainings"]
            return bool(trainings) and trainings[0]["state"] != "running"

        wait_until(finished, "the training the annotations start", backend, backend_log, 1200)
        [training] = json.loads(state_file.read_text())["trainings"]
        assert training["state"] == "completed", training
        assert training["labels"]["images"] == LABELLED
        assert training["labels"]["left_out"] == {"skipped": 1, "ambiguous": 1}
        versions = Registry(loop.registry, "digits").versions()
        assert [(v.number, v.status) for v in versions] == [(1, "Approved"), (2, PENDING)]
        assert versions[1].metadata["warm_start"] == str((loop.v1 / "model").resolve())
        records = [json.loads(line) for split in ("train", "validation", "test")
                   for line in (Path(training["run_dir"]) / "process" / "opt_ml" / "processing"
                                / "output" / split / "manifest.jsonl").read_text().splitlines()]
        extra = {r["source"] for r in records if r.get("channel") == "extra"}  # + augmented copies
        assert len(extra) == LABELLED

        # the same annotations, exported by hand and imported as an ImageFolder
        export = loop.out / "export.json"
        label_studio.sdk("export", project=project, out=str(export))
        folder = loop.out / "labelled"
        done = labelling("import-annotations", str(export), "--model", str(loop.v1 / "model"),
                         "--out", str(folder), "--document-root", str(loop.data["drifted"]))
        assert done.returncode == 0, done.stderr
        report = json.loads((folder / "labels.json").read_text())
        assert report["left_out"] == {"unlabelled": len(tasks) - 2 - LABELLED, "skipped": 1,
                                      "ambiguous": 1}
        imported = sorted(p.relative_to(folder).as_posix() for p in folder.glob("*/*.png"))
        wanted = sorted(f"{truth[i]}/{i}-{Path(stored[i]['data']['image_id']).name}"
                        for i in labelled)
        assert imported == wanted
        for i in labelled:
            original = loop.data["drifted"] / stored[i]["data"]["image_id"]
            copy = folder / truth[i] / f"{i}-{original.name}"
            assert copy.read_bytes() == original.read_bytes()
    finally:
        stop_process(backend)
        stop_process(server, timeout=60)
