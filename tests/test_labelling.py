"""The Label Studio loop's own parts, without a Label Studio server (tests/labelling has the real
one): the labelling configuration, the annotation import, the task selection and the ML backend's
protocol, webhook counting and training trigger."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from labelling.annotations import import_annotations, read_export
from labelling.backend import Backend, make_server
from labelling.config import choice_result, config_classes, label_config
from labelling.images import local_files_url, read_image
from labelling.model import LabellingModel
from labelling.tasks import BatchRun, select
from labelling.training import Trainer
from pipelines.runner import RunResult, StepResult
from shared.errors import UserError
from tests.serving import request


def test_the_label_config_names_the_models_classes_and_reads_back():
    classes = ["cat", 'a "quoted" & <odd> name', "7"]
    assert config_classes(label_config(classes)) == classes
    with pytest.raises(UserError, match='no <Choices name="label">'):
        config_classes("<View><Image name='image' value='$image'/></View>")
    with pytest.raises(UserError, match="not valid XML"):
        config_classes("<View>")


def task(task_id, url, *annotations):
    return {"id": task_id, "data": {"image": url}, "annotations": list(annotations)}


def annotation(label=None, cancelled=False):
    return {"result": choice_result(label) if label else [], "was_cancelled": cancelled}


def digit(folder: Path, label: str, index: int = 0) -> Path:
    return sorted((folder / label).iterdir())[index]


def test_annotations_become_an_image_folder_and_every_task_left_out_is_reported(
        digits_folder, tmp_path):
    root = digits_folder
    url = lambda path: local_files_url(path, root)  # noqa: E731
    corrupt = tmp_path / "root" / "broken.png"
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"\x89PNG not really")
    tasks = [task(1, url(digit(root, "3")), annotation("3")),
             task(2, url(digit(root, "5")), annotation("5"), annotation("5")),  # agree
             task(3, url(digit(root, "4"))),
             task(4, url(digit(root, "6")), annotation(cancelled=True)),
             task(5, url(digit(root, "7")), annotation("7"), annotation("1")),
             task(6, url(digit(root, "8")), annotation("dog")),
             task(7, "/data/local-files/?d=../../etc/passwd", annotation("2")),
             task(8, "/data/local-files/?d=9/missing.png", annotation("9")),
             task(9, "/data/local-files/?d=broken.png", annotation("2"))]
    out = tmp_path / "labelled"
    report = import_annotations(tasks[:8], [str(d) for d in range(10)], out, document_root=root)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        f"3/1-{digit(root, '3').name}", f"5/2-{digit(root, '5').name}"]
    assert (out / "3" / f"1-{digit(root, '3').name}").read_bytes() == digit(root, "3").read_bytes()
    written = json.loads((out / "labels.json").read_text())
    assert written["left_out"] == {"unlabelled": 1, "skipped": 1, "ambiguous": 1,
                                   "unknown class": 1, "missing image": 2}
    assert {t["task"]: t["reason"] for t in written["tasks_left_out"]} == {
        3: "unlabelled", 4: "skipped", 5: "ambiguous", 6: "unknown class", 7: "missing image",
        8: "missing image"}
    assert "does not name a file inside the document root" in written["tasks_left_out"][4]["detail"]
    assert report.summary().startswith("2 labelled images in 2 classes")
    # an undecodable image is reported too, under the root it came from
    report = import_annotations([tasks[8]], ["2"], tmp_path / "other",
                                document_root=corrupt.parent)
    assert report.left_out[0]["reason"] == "missing image" and not report.imported


def test_a_failed_import_leaves_the_earlier_folder_whole(digits_folder, tmp_path, monkeypatch):
    out = tmp_path / "labelled"
    good = [task(i, local_files_url(digit(digits_folder, "3", i), digits_folder), annotation("3"))
            for i in range(2)]
    import_annotations(good[:1], ["3"], out, document_root=digits_folder)
    before = sorted(p.name for p in out.rglob("*"))
    calls = []

    def failing_read(*args, **kwargs):  # the second image: the disk fills up
        calls.append(args)
        if len(calls) == 2:
            raise OSError("No space left on device")
        return read_image(*args, **kwargs)

    monkeypatch.setattr("labelling.annotations.read_image", failing_read)
    with pytest.raises(OSError, match="No space left"):
        import_annotations(good, ["3"], out, document_root=digits_folder)
    assert sorted(p.name for p in out.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir()] == ["labelled"]  # no staging left behind


@pytest.mark.parametrize("text, message", [("{not json", "is not JSON"),
                                           ('{"tasks": []}', "not a Label Studio JSON export")])
def test_an_export_that_is_not_label_studios_json_is_refused(tmp_path, text, message):
    path = tmp_path / "export.json"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        read_export(path)


def batch_run(drift, windows=(), names=()):
    predictions = [{"id": f"{i}.png", "prediction": "a", "probability": p}
                   for i, p in enumerate([0.9, 0.4, 0.8, 0.5, 0.7, 0.6])]
    report = {"drift": drift, "windows": [{"start": s, "end": e, "drift": d}
                                          for s, e, d in windows]}
    return BatchRun(Path("run"), Path("images"), predictions, report, list(names), Path("m"))


def test_tasks_are_the_drifted_windows_images_least_confident_first():
    names = [f"{i}.png" for i in range(6)]
    run = batch_run(True, [(0, 2, False), (2, 4, True), (4, 6, True)], names)
    assert [r["id"] for r in select(run, "drifted", None)] == ["3.png", "5.png", "4.png",
                                                                "2.png"]
    assert [r["id"] for r in select(run, "drifted", 2)] == ["3.png", "5.png"]
    assert [r["id"] for r in select(run, "uncertain", 3)] == ["1.png", "3.png", "5.png"]
    assert len(select(run, "all", None)) == 6
    assert select(batch_run(False), "drifted", None) == []
    assert len(select(batch_run(True), "drifted", None)) == 6  # drift, but no windows tested
    with pytest.raises(UserError, match="drifted, uncertain, all"):
        select(run, "random", None)


@pytest.fixture(scope="module")
def model(trained_job):
    return LabellingModel(trained_job[0] / "model")


@pytest.fixture
def backend_server(model, digits_folder, tmp_path):
    """The ML backend on 127.0.0.1, training through a recorded stand-in for the pipeline."""
    runs = []

    def run_pipeline(definition, params, run_dir):
        runs.append(params)
        register = StepResult("register", "completed",
                              outputs={"version_dir": tmp_path / "registry" / "v2"})
        return RunResult("training", run_dir, [register])

    trainer = Trainer(tmp_path / "work", model.classes, {"input_data": str(digits_folder)},
                      threshold=2, document_root=digits_folder, run_pipeline=run_pipeline)
    backend = Backend(model, document_root=digits_folder, trainer=trainer)
    server = make_server(backend, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield SimpleNamespace(port=server.server_address[1], trainer=trainer, runs=runs,
                              backend=backend)
    finally:
        server.shutdown()
        server.server_close()


def post(port, path, body):
    status, payload, _ = request(port, "POST", path, json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    return status, payload


def test_the_backend_answers_label_studios_protocol(backend_server, model, digits_folder):
    port = backend_server.port
    status, health = request(port, "GET", "/health")[:2]
    assert status == 200 and health["status"] == "UP"
    status, answer = post(port, "/setup", {"project": 1, "schema": label_config(model.classes)})
    assert status == 200 and answer == {"model_version": model.version}
    status, answer = post(port, "/setup", {"schema": label_config(["cat", "dog"])})
    assert status == 400 and "['cat', 'dog'] are not classes of the model" in answer["error"]

    images = [digit(digits_folder, str(d), 1) for d in range(10)]
    tasks = [{"id": i, "data": {"image": local_files_url(p, digits_folder)}}
             for i, p in enumerate(images)]
    tasks.insert(3, {"id": 99, "data": {"image": "/data/local-files/?d=../../etc/hostname"}})
    status, answer = post(port, "/predict", {"tasks": tasks})
    assert status == 200 and len(answer["results"]) == 11
    unreadable = answer["results"].pop(3)
    assert unreadable["result"] == []  # reported in the log; the other tasks are answered
    chosen = [r["result"][0]["value"]["choices"][0] for r in answer["results"]]
    assert sum(c == str(d) for d, c in enumerate(chosen)) >= 8
    assert all(r["model_version"] == model.version and 0 < r["score"] <= 1
               for r in answer["results"])

    assert request(port, "GET", "/nowhere")[0] == 404
    status, payload, _ = request(port, "POST", "/predict", b"{oops",
                                 {"Content-Type": "application/json"})
    assert status == 400 and "not JSON" in payload["error"]
    assert post(port, "/predict", {"tasks": "all"})[0] == 400


class ExportServer:
    """Label Studio's export endpoint, as far as the backend uses it."""

    def __init__(self, tasks, token):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                owner.paths.append(self.path)
                allowed = self.headers.get("Authorization") == f"Token {token}"
                data = json.dumps(tasks if allowed else {"detail": "no"}).encode()
                self.send_response(200 if allowed else 401)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.paths: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_annotations_past_the_threshold_start_one_training_with_them(backend_server,
                                                                     digits_folder):
    port, trainer = backend_server.port, backend_server.trainer
    tasks = [task(i, local_files_url(digit(digits_folder, str(i)), digits_folder),
                  annotation(str(i))) for i in range(3)]
    label_studio = ExportServer(tasks, "secret")
    try:
        event = {"action": "ANNOTATION_CREATED", "project": {"id": 4}}
        status, answer = post(port, "/webhook", event)
        assert status == 200 and answer["new_annotations"] == 1 and "training" not in answer
        status, answer = post(port, "/webhook", event)  # the threshold, but where to export from?
        assert status == 400 and "--label-studio-url" in answer["error"]
        post(port, "/setup", {"hostname": label_studio.url, "access_token": "secret"})
        status, answer = post(port, "/webhook", event)
        assert status == 200 and answer["training"]["started"] is True
        assert answer["training"]["annotations"] == 3
        trainer.wait(60)
        [training] = json.loads((trainer.work_dir / "state.json").read_text())["trainings"]
        assert training["state"] == "completed" and training["labels"]["images"] == 3
        assert label_studio.paths == ["/api/projects/4/export?exportType=JSON"]
        [params] = backend_server.runs
        assert params["extra_data"] == params["reference_data"] == training["labels"]["folder"]
        assert params["input_data"] == str(digits_folder)
        assert sorted(p.parent.name for p in Path(params["extra_data"]).rglob("*.png")) == [
            "0", "1", "2"]
        assert post(port, "/webhook", {"action": "PROJECT_UPDATED"})[1]["status"] == "ignored"
        status, answer = post(port, "/webhook", {"action": "START_TRAINING", "project": 4})
        assert answer["training"]["number"] == 2  # "Start training" needs no threshold
        trainer.wait(60)
    finally:
        label_studio.close()
    # a backend restarted while a training ran records it as interrupted, and counts on
    state = json.loads((trainer.work_dir / "state.json").read_text())
    state["trainings"][-1]["state"] = "running"
    (trainer.work_dir / "state.json").write_text(json.dumps(state))
    again = Trainer(trainer.work_dir, trainer.classes, trainer.params, threshold=2,
                    document_root=digits_folder)
    assert again.state["trainings"][-1]["state"] == "interrupted"
