"""The model registry's approval statuses, the approve/reject commands, and the batch pipeline's
choice of the latest approved version."""

import json
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

from pipelines.__main__ import main
from pipelines.definition import load_pipeline
from pipelines.registry import APPROVED, PENDING, REJECTED, Registry, RegistryError
from pipelines.runner import Runner


def fake_version(root, tag):
    """Folders shaped like the training pipeline's outputs (the registry copies, never reads,
    the model, except its evaluation.json)."""
    model, detector = root / f"model-{tag}", root / f"detector-{tag}"
    model.mkdir(parents=True)
    detector.mkdir(parents=True)
    (model / "model.json").write_text(tag)
    (detector / "detector.json").write_text(tag)
    return {"model": model, "detector": detector}


def test_a_new_version_waits_for_approval_and_the_commands_change_its_status(tmp_path, capsys):
    registry = Registry(tmp_path / "registry", "digits")
    version = registry.register(fake_version(tmp_path, "a"), tmp_path / "run")
    assert version.status == PENDING and version.number == 1
    assert (version.folder / "model" / "drift" / "detector.json").read_text() == "a"

    assert main(["approve", "digits", "v1", "--registry", str(tmp_path / "registry"),
                 "--note", "looked at the gallery"]) == 0
    assert "digits v1: Approved" in capsys.readouterr().out
    meta = json.loads((version.folder / "metadata.json").read_text())
    assert meta["approval_status"] == APPROVED
    assert [h["status"] for h in meta["approval_history"]] == [PENDING, APPROVED]
    assert meta["approval_history"][-1]["note"] == "looked at the gallery"

    assert main(["reject", "digits", "1", "--registry", str(tmp_path / "registry")]) == 0
    assert registry.version(1).status == REJECTED
    assert main(["versions", "digits", "--registry", str(tmp_path / "registry")]) == 0
    assert "v1\tRejected" in capsys.readouterr().out


def test_unknown_versions_and_bad_statuses_are_refused_with_what_exists(tmp_path, capsys):
    registry = Registry(tmp_path / "registry", "digits")
    registry.register(fake_version(tmp_path, "a"), tmp_path / "run")
    assert main(["approve", "digits", "7", "--registry", str(tmp_path / "registry")]) == 2
    assert "has no version 7" in (err := capsys.readouterr().err) and "(versions: v1)" in err
    with pytest.raises(SystemExit):
        main(["approve", "digits", "latest", "--registry", str(tmp_path / "registry")])
    with pytest.raises(RegistryError, match="not one of PendingManualApproval, Approved"):
        registry.set_status(1, "approved")
    assert registry.version(1).status == PENDING
    assert main(["approve", "digit", "1", "--registry", str(tmp_path / "registry")]) == 2
    err = capsys.readouterr().err
    assert "no model digit in" in err and "(models: digits)" in err
    assert not (tmp_path / "registry" / "digit").exists()


def test_versions_registered_at_once_get_distinct_numbers(tmp_path):
    registry = Registry(tmp_path / "registry", "digits")
    sources = [fake_version(tmp_path, str(i)) for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        numbers = sorted(pool.map(lambda s: registry.register(s, tmp_path).number, sources))
    assert numbers == [1, 2, 3, 4, 5, 6]
    contents = {(v.folder / "model" / "model.json").read_text() for v in registry.versions()}
    assert contents == {str(i) for i in range(6)}
    assert not list(registry.folder.glob(".staging-*"))


CHOOSE = """
name: choose
parameters:
  model: {default: null}
  detector: {default: null}
  registry: {}
steps:
  - name: model
    job: registered_model
    registry: "${params.registry}"
    model_name: digits
    inputs: {model: "${params.model}", detector: "${params.detector}"}
"""


def choose(tmp_path, **params):
    path = tmp_path / "choose.yaml"
    path.write_text(textwrap.dedent(CHOOSE))
    run_dir = tmp_path / f"run-{len(list(tmp_path.glob('run-*')))}"
    return Runner(load_pipeline(path), {"registry": str(tmp_path / "registry"), **params},
                  run_dir, echo=False).run()


def test_the_batch_pipeline_takes_the_latest_approved_version(tmp_path):
    registry = Registry(tmp_path / "registry", "digits")
    for tag in "abc":
        registry.register(fake_version(tmp_path, tag), tmp_path / "run")

    nothing = choose(tmp_path)
    assert nothing.state("model") == "failed"
    assert "no approved version (v1 PendingManualApproval, v2 PendingManualApproval" in \
        nothing.steps[0].detail
    assert "python -m pipelines approve digits N" in nothing.steps[0].detail

    registry.set_status(1, APPROVED)
    registry.set_status(2, APPROVED)
    registry.set_status(2, REJECTED)  # withdrawn: v1 is again the one in use
    chosen = choose(tmp_path)
    assert chosen.ok and chosen.outputs("model")["version_dir"] == registry.version(1).folder
    assert (chosen.outputs("model")["model"] / "model.json").read_text() == "a"
    assert (chosen.outputs("model")["detector"] / "detector.json").read_text() == "a"

    registry.set_status(3, APPROVED)
    assert choose(tmp_path).outputs("model")["version_dir"] == registry.version(3).folder


def test_a_given_model_wins_and_brings_its_packaged_detector(tmp_path):
    version = Registry(tmp_path / "registry", "digits").register(
        fake_version(tmp_path, "a"), tmp_path / "run")  # pending: given by path, it still runs
    given = choose(tmp_path, model=str(version.folder / "model"))
    assert given.ok and given.outputs("model")["detector"] == version.folder / "model" / "drift"
    bare = fake_version(tmp_path, "bare")["model"]
    refused = choose(tmp_path, model=str(bare))
    assert refused.state("model") == "failed" and "give the detector input" in \
        refused.steps[0].detail


def test_the_retrain_guard_holds_while_a_retrained_version_is_pending_or_rejected(tmp_path):
    """pipelines/retrain.py's decisions, with a recording stand-in for the nested run (the real
    run is in tests/test_demo.py)."""
    from pipelines.definition import Step
    from pipelines.retrain import retrain

    registry = Registry(tmp_path / "registry", "digits")
    v1 = registry.register(fake_version(tmp_path, "a"), tmp_path)
    registry.set_status(1, APPROVED)
    in_use = v1.folder / "model"
    calls = []

    class Ran:  # a training run that registered a version
        ok = True
        steps = []
        failed_step = held_by = None

        def state(self, name):
            return "completed"

        def outputs(self, name):
            tag = f"retrained-{len(calls)}"
            return {"version_dir": registry.register(fake_version(tmp_path, tag), tmp_path,
                                                     warm_start=in_use).folder}

    def run_pipeline(definition, params, run_dir):
        calls.append((definition, params, run_dir))
        return Ran()

    step = Step("retrain", "retrain", {})
    spec = {"model": in_use, "registry": tmp_path / "registry", "model_name": "digits",
            "definition": "training.yaml", "params": {"input_data": "/data", "epochs": None}}
    source = tmp_path / "pipelines" / "batch.yaml"
    assert retrain(step, {**spec, "params": {"input_data": None}}, source, tmp_path, run_pipeline)[
        1] == "condition-false" and not calls  # nothing configured to retrain on

    outputs, state, detail = retrain(step, spec, source, tmp_path / "s1", run_pipeline)
    assert state == "completed" and outputs["version_dir"].name == "v2"
    assert calls == [((tmp_path / "pipelines" / "training.yaml").resolve(),
                      {"input_data": "/data"}, tmp_path / "s1" / "run")]
    for status in (PENDING, REJECTED):
        registry.set_status(2, status)
        _, state, detail = retrain(step, spec, source, tmp_path / "s2", run_pipeline)
        assert state == "condition-false" and "v2, retrained from the model in use" in detail
        assert status in detail and len(calls) == 1
    registry.set_status(2, APPROVED)  # v2 is now the model in use; v1 retrains no more by itself
    assert retrain(step, spec, source, tmp_path / "s3", run_pipeline)[1] == "completed"
