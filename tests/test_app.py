"""The Streamlit app through Streamlit's own AppTest, and its non-UI modules on their own.

The model is a test_resnet trained in-process on the digits (seconds); the run folder comes from
the real local runner on a small pipeline (evaluate, drift reference and test, explanations,
register), so the review page reads what the runner really writes.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from app.predictors import (
    EndpointPredictor,
    LocalPredictor,
    PredictionError,
    ServerPredictor,
    load_local_model,
)
from app.runs import read_run
from app.settings import REGISTRY_VARIABLE, RUNS_VARIABLE
from pipelines.definition import load_pipeline
from pipelines.registry import APPROVED, PENDING, REJECTED, Registry
from pipelines.runner import Runner
from shared.evaluation import accuracy_of
from tests.app_support import SIZE, digit_png, train_digits_model
from tests.serving import free_port, running_server

SCRIPT = Path(__file__).resolve().parent.parent / "app" / "streamlit_app.py"
RUN_TIMEOUT = 60  # seconds for one script run: the first loads torch and the model
DIGIT = 1234  # a digit the test model gets right

REVIEW_PIPELINE = """
name: review
parameters: {model: {}, test: {}, reference: {}, production: {}, registry: {}}
steps:
  - name: evaluate
    job: processing
    component: algorithm
    mode: evaluate
    inputs: {model: "${params.model}", test: "${params.test}"}
    outputs: [evaluation]
  - name: drift_reference
    job: processing
    component: monitoring
    mode: train
    inputs: {data: "${params.reference}"}
    args: [--permutations, "20", --workers, "1"]
    outputs: [detector]
  - name: drift
    job: processing
    component: monitoring
    mode: serve
    inputs: {data: "${params.production}", detector: "${steps.drift_reference.outputs.detector}"}
    args: [--workers, "1"]
    outputs: [report]
  - name: explain
    job: processing
    component: explainability
    mode: serve
    inputs: {data: "${params.test}", model: "${params.model}"}
    args: [--max-images, "4", --n-steps, "8", --workers, "1"]
    outputs: [explanations]
  - name: register
    job: register
    registry: "${params.registry}"
    model_name: digits
    depends_on: [explain, drift]
    inputs:
      model: "${params.model}"
      evaluation: "${steps.evaluate.outputs.evaluation}"
      explanations: "${steps.explain.outputs.explanations}"
"""


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_digits_model(tmp_path_factory.mktemp("app_model") / "model")


@pytest.fixture(scope="module")
def review_run(digits_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder (runs/review) written by the real runner; its registry is runs/../registry.
    The production images are the reference's negatives: the drift test flags them."""
    from shared.data import DatasetWriter
    from shared.sample_data import digits_images

    root = tmp_path_factory.mktemp("app_review")
    images, labels = digits_images(SIZE)
    writer = DatasetWriter(root / "test", SIZE, classes=[str(c) for c in range(10)])
    for i in range(1500, 1600):
        writer.add(images[i], f"{labels[i]}/{i}.png", f"{labels[i]}/{i}.png", labels[i])
    writer.commit({"split": "test"})
    large, _ = digits_images(32)
    for name, rows, change in (("reference", range(60), lambda a: a),
                               ("production", range(60, 120), lambda a: 255 - a)):
        (root / name).mkdir()
        for i in rows:
            Image.fromarray(change(large[i])).save(root / name / f"{i}.png")
    (root / "review.yaml").write_text(textwrap.dedent(REVIEW_PIPELINE))
    params = {"model": str(digits_model), "test": str(root / "test"),
              "reference": str(root / "reference"), "production": str(root / "production"),
              "registry": str(root / "registry")}
    result = Runner(load_pipeline(root / "review.yaml"), params, root / "runs" / "review",
                    echo=False).run()
    assert result.ok, result.summary()
    return root / "runs" / "review"


def app(monkeypatch: pytest.MonkeyPatch, registry: Path, runs: Path) -> AppTest:
    monkeypatch.setenv(REGISTRY_VARIABLE, str(registry))
    monkeypatch.setenv(RUNS_VARIABLE, str(runs))
    return AppTest.from_file(str(SCRIPT), default_timeout=RUN_TIMEOUT).run()


def texts(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def use_model_path(at: AppTest, model: Path) -> AppTest:
    at.sidebar.radio(key="local_how").set_value("Model folder or model.tar.gz").run()
    return at.sidebar.text_input(key="model_path").set_value(str(model)).run()


# --- the app, through AppTest --------------------------------------------------------------------

def test_predict_shows_the_right_class_for_a_digit_and_its_overlay_on_request(
        digits_model, tmp_path, monkeypatch):
    png, label = digit_png(DIGIT)
    at = use_model_path(app(monkeypatch, tmp_path / "registry", tmp_path / "runs"), digits_model)
    at.file_uploader(key="images").set_value([("digit.png", png, "image/png")]).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert f"**digit.png**: predicted class **{label}**" in texts(at)
    top = at.dataframe[0].value
    assert list(top["class"])[0] == label and len(top) == 3
    assert len(at.image) == 1
    at.sidebar.checkbox(key="explain").check().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert len(at.image) == 2  # the upload and its integrated-gradients overlay


def test_a_registered_version_predicts_and_bad_inputs_show_messages_not_tracebacks(
        digits_model, tmp_path, monkeypatch):
    registry = Registry(tmp_path / "registry", "digits")
    registry.register({"model": digits_model}, tmp_path / "run")
    png, label = digit_png(DIGIT)
    at = app(monkeypatch, tmp_path / "registry", tmp_path / "runs")
    assert at.sidebar.selectbox(key="predict_version").value == "v1 (PendingManualApproval)"
    at.file_uploader(key="images").set_value([("digit.png", png, "image/png"),
                                              ("broken.png", b"\x89PNG not really", "image/png")])
    at.run()
    assert not at.exception
    assert f"predicted class **{label}**" in texts(at)
    assert len(at.error) == 1 and at.error[0].value == ("broken.png: not a recognised image"
                                                              " format (JPEG, PNG, BMP, GIF, WebP or TIFF)")
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    use_model_path(at, not_a_model)
    assert not at.exception
    assert "is not a model artifact" in at.error[0].value
    at.sidebar.radio(key="source").set_value("Model server URL").run()
    at.sidebar.text_input(key="server_url").set_value(f"http://127.0.0.1:{free_port()}").run()
    assert not at.exception
    assert all("cannot reach the model server" in e.value for e in at.error) and len(at.error) == 2


def test_review_shows_steps_evaluation_drift_and_the_explanation_gallery(review_run, monkeypatch):
    at = app(monkeypatch, review_run.parent.parent / "other-registry", review_run.parent)
    at.sidebar.radio(key="page").set_value("Review").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    steps = at.dataframe[0].value
    assert sorted(steps["step"]) == ["drift", "drift_reference", "evaluate", "explain", "register"]
    assert list(steps["step"])[-1] == "register"  # in the order the steps started
    assert set(steps["state"]) == {"completed"} and (steps["seconds"] >= 0).all()
    report = read_run(review_run)
    assert at.metric[0].value == f"{accuracy_of(report.evaluation):.4f}"
    assert at.warning[0].value.startswith("Drift detected: p-value")
    assert len(at.image) == 2 + 4  # confusion matrix, drift plot, four gallery overlays
    # the registry is the one the run registered into, whatever the app was started with
    assert at.text_input(key="review_registry").value == str(review_run.parent.parent / "registry")
    assert "**v1** (this run): PendingManualApproval" in texts(at)


def test_approve_and_reject_buttons_change_the_registry_status(review_run, monkeypatch):
    registry = Registry(review_run.parent.parent / "registry", "digits")
    at = app(monkeypatch, registry.folder.parent, review_run.parent)
    at.sidebar.radio(key="page").set_value("Review").run()
    assert registry.version(1).status == PENDING
    at.button(key="approve-digits-1").click().run()
    assert registry.version(1).status == APPROVED
    assert "**v1** (this run): Approved" in texts(at) and at.success[-1].value == "digits v1: Approved"
    assert at.button(key="approve-digits-1").disabled
    at.button(key="reject-digits-1").click().run()
    assert registry.version(1).status == REJECTED
    history = registry.version(1).metadata["approval_history"]
    assert [h["status"] for h in history] == [PENDING, APPROVED, REJECTED]
    assert history[-1]["note"] == "set in the review app"


# --- the modules under the pages -----------------------------------------------------------------

def test_the_server_predictor_gets_the_local_models_answer_from_the_real_server(
        digits_model, tmp_path):
    base = tmp_path / "opt_ml"
    shutil.copytree(digits_model, base / "model")
    png, label = digit_png(DIGIT)
    local = LocalPredictor(load_local_model(digits_model)).predict("digit.png", png, "image/png")
    with running_server(base) as (_, port):
        for content_type in ("image/png", "image/webp"):  # a type the server does not name: x-image
            served = ServerPredictor(f"127.0.0.1:{port}").predict("digit.png", png, content_type)
            assert served.label == local.label == label
            assert [c for c, _ in served.top(3)] == [c for c, _ in local.top(3)]
            assert served.ranked[0][1] == pytest.approx(local.ranked[0][1], abs=1e-4)
        with pytest.raises(PredictionError, match=r"broken.png: the model server .* refused it"
                                                  r" \(HTTP 400\)"):
            ServerPredictor(f"http://127.0.0.1:{port}/invocations").predict(
                "broken.png", b"not an image", "image/png")


def test_an_unreachable_server_and_missing_aws_credentials_are_plain_errors(monkeypatch, tmp_path):
    with pytest.raises(PredictionError, match="cannot reach the model server at http://127.0.0.1"):
        ServerPredictor(f"127.0.0.1:{free_port()}", timeout=5).predict("x.png", b"x", "image/png")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata call
    with pytest.raises(PredictionError, match="no AWS credentials found"):
        EndpointPredictor("digits", region="eu-west-1")


def test_a_model_path_that_is_not_a_model_says_what_a_model_is(tmp_path):
    (tmp_path / "model.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(PredictionError, match="no model at"):
        load_local_model(tmp_path / "missing")
    with pytest.raises(PredictionError, match="is not a readable tar archive"):
        load_local_model(tmp_path / "model.tar.gz")
