"""Pipeline definitions and the local runner: ordering, references, errors, conditions, resume."""

import json
import shutil
import textwrap
import time

import pytest
from PIL import Image

from algorithm.hyperparameters import Hyperparameters
from pipelines.definition import PipelineError, load_pipeline
from pipelines.runner import Runner
from tests.conftest import ROOT


def write_yaml(tmp_path, text, name="p.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


ORDERED = """
name: ordered
parameters:
  data: {}
  size: {default: 16}
steps:
  - name: last
    job: condition
    file: "${steps.middle.outputs.report}/report.json"
    all: [{path: images_used, op: ">=", value: 1}]
  - name: middle
    job: processing
    component: processing
    mode: serve
    depends_on: [first]
    inputs: {data: "${params.data}"}
    args: [--image-size, "${params.size}"]
    outputs: [data, report]
  - name: first
    job: processing
    component: processing
    mode: serve
    inputs: {data: "${params.data}"}
    args: [--image-size, "${params.size}"]
    outputs: [data, report]
"""


def test_steps_run_in_dependency_order_not_file_order(tmp_path):
    assert load_pipeline(write_yaml(tmp_path, ORDERED)).order == ["first", "middle", "last"]


@pytest.mark.parametrize("change,message", [
    (("${steps.middle.outputs.report}", "${steps.nowhere.outputs.report}"),
     "refers to unknown step(s) nowhere"),
    (('"${params.size}"]\n    outputs: [data, report]\n  - name: first',
      '"${params.colour}"]\n    outputs: [data, report]\n  - name: first'),
     "unknown parameter(s) colour"),
    (("inputs: {data: \"${params.data}\"}", "inputs: {data: \"${steps.last.outputs.x}\"}"),
     "steps form a cycle: last -> middle -> first -> last"),
    (("job: condition", "job: lambda"), "job 'lambda' is not one of"),
    (("component: processing\n    mode: serve\n    inputs: {data: \"${params",
      "component: cooking\n    mode: serve\n    inputs: {data: \"${params"),
     "component 'cooking' is not one of"),
])
def test_bad_definitions_are_refused_before_anything_runs(tmp_path, change, message):
    text = ORDERED.replace(*change)
    assert text != ORDERED
    with pytest.raises(PipelineError) as err:
        load_pipeline(write_yaml(tmp_path, text))
    assert message in str(err.value)


def test_unknown_and_missing_parameters_are_refused(tmp_path):
    pipeline = load_pipeline(write_yaml(tmp_path, ORDERED))
    with pytest.raises(PipelineError, match="unknown parameter.*colour.*takes: data, size"):
        Runner(pipeline, {"data": "x", "colour": "red"}, tmp_path / "run")
    with pytest.raises(PipelineError, match="parameter data is required"):
        Runner(pipeline, {}, tmp_path / "run")


def small_images(root, n=6):
    for i in range(n):
        (root / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 20), (i * 30, 0, 0)).save(root / f"c{i % 2}" / f"{i}.png")
    return root


def test_run_chains_outputs_and_resume_reuses_unchanged_steps(tmp_path):
    data = small_images(tmp_path / "images")
    pipeline = load_pipeline(write_yaml(tmp_path, ORDERED))
    run_dir = tmp_path / "run"
    first = Runner(pipeline, {"data": str(data)}, run_dir, echo=False).run()
    assert first.ok and [s.state for s in first.steps] == ["completed"] * 3
    assert (run_dir / "middle" / "opt_ml" / "processing" / "output" / "data" /
            "manifest.jsonl").exists()
    assert json.loads((run_dir / "first" / "status.json").read_text())["state"] == "completed"
    again = Runner(pipeline, {"data": str(data)}, run_dir, resume=True, echo=False).run()
    assert [s.state for s in again.steps] == ["reused"] * 3
    small_images(tmp_path / "images", n=8)  # new input images: everything downstream reruns
    changed = Runner(pipeline, {"data": str(data)}, run_dir, resume=True, echo=False).run()
    assert [s.state for s in changed.steps] == ["completed"] * 3


def test_the_run_summary_records_each_steps_state_and_wall_time(tmp_path):
    """`make bench` reads these to break `make demo` down by step."""
    data = small_images(tmp_path / "images")
    run_dir = tmp_path / "run"
    started = time.monotonic()
    result = Runner(load_pipeline(write_yaml(tmp_path, ORDERED)), {"data": str(data)}, run_dir,
                    echo=False).run()
    wall = time.monotonic() - started
    steps = json.loads((run_dir / "summary.json").read_text())["steps"]
    assert [(s["name"], s["state"]) for s in steps] == [("first", "completed"),
                                                       ("middle", "completed"), ("last", "completed")]
    assert [s["seconds"] for s in steps] == [s.seconds for s in result.steps]
    assert steps[0]["seconds"] > 0 and steps[1]["seconds"] > 0  # each a processing job
    assert all(s["started"] < s["finished"] for s in steps)
    assert steps[0]["finished"] <= steps[1]["started"]  # middle needs first's output
    assert sum(s["seconds"] for s in steps) <= wall


def test_a_false_condition_skips_every_step_below_it_however_deep(tmp_path):
    """`beyond` reads the output of `after`, which the condition holds back: both are skipped (the
    training pipeline's register step reads two steps its gate holds back)."""
    text = ORDERED.replace('op: ">=", value: 1', 'op: ">=", value: 1000') + textwrap.indent(
        textwrap.dedent("""
        - name: after
          job: processing
          component: processing
          mode: serve
          depends_on: [last]
          inputs: {data: "${params.data}"}
          outputs: [data]
        - name: beyond
          job: processing
          component: processing
          mode: serve
          inputs: {data: "${steps.after.outputs.data}"}
          outputs: [data]
        """), "  ")
    data = small_images(tmp_path / "images")
    result = Runner(load_pipeline(write_yaml(tmp_path, text)), {"data": str(data)},
                    tmp_path / "run", echo=False).run()
    assert result.ok
    assert [result.state(n) for n in ("last", "after", "beyond")] == [
        "condition-false", "skipped", "skipped"]
    assert "images_used = 6 >= 1000: no" in result.steps[2].detail


def test_a_failed_step_stops_the_run_with_its_reason(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = Runner(load_pipeline(write_yaml(tmp_path, ORDERED)), {"data": str(empty)},
                    tmp_path / "run", echo=False).run()
    assert not result.ok and result.state("first") == "failed"
    assert "no images in" in result.steps[0].detail
    assert [s.name for s in result.steps] == ["first"]
    assert "FAILED" in result.summary()


def test_registering_twice_gives_two_versions_and_never_overwrites(tmp_path, trained_job):
    text = """
    name: reg
    parameters: {model: {}, registry: {}}
    steps:
      - name: register
        job: register
        registry: "${params.registry}"
        model_name: digits
        inputs: {model: "${params.model}"}
    """
    pipeline = load_pipeline(write_yaml(tmp_path, text))
    params = {"model": str(trained_job[0] / "model"), "registry": str(tmp_path / "registry")}
    for run in ("a", "b"):
        assert Runner(pipeline, params, tmp_path / run, echo=False).run().ok
    versions = sorted(p.name for p in (tmp_path / "registry" / "digits").glob("v*"))
    assert versions == ["v1", "v2"]
    meta = json.loads((tmp_path / "registry" / "digits" / "v2" / "metadata.json").read_text())
    assert meta["version"] == 2 and meta["accuracy"] >= 0.95
    assert (tmp_path / "registry" / "digits" / "v1" / "model" / "model.safetensors").exists()
    shutil.rmtree(tmp_path / "registry" / "digits" / "v2")


def test_a_registered_detector_is_packaged_inside_the_model(tmp_path, trained_job):
    from shared.drift import DriftDetector, untrained_encoder
    from tests.reliability import digits_arrays

    detector = tmp_path / "detector"
    DriftDetector.fit(untrained_encoder(32), digits_arrays(32)[0][:100]).save(detector)
    text = """
    name: reg
    parameters: {model: {}, detector: {}, registry: {}}
    steps:
      - name: register
        job: register
        registry: "${params.registry}"
        model_name: digits
        inputs: {model: "${params.model}", detector: "${params.detector}"}
    """
    params = {"model": str(trained_job[0] / "model"), "detector": str(detector),
              "registry": str(tmp_path / "registry")}
    assert Runner(load_pipeline(write_yaml(tmp_path, text)), params, tmp_path / "run",
                  echo=False).run().ok
    version = tmp_path / "registry" / "digits" / "v1"
    packaged = DriftDetector.load(version / "model" / "drift")
    assert packaged.config.detector_id == DriftDetector.load(detector).config.detector_id
    assert (version / "detector" / "detector.json").exists()


def test_batch_transform_step_writes_one_out_file_per_shard(tmp_path, trained_job):
    text = """
    name: transform
    parameters: {model: {}, data: {}}
    steps:
      - name: transform
        job: transform
        inputs: {model: "${params.model}", data: "${params.data}"}
    """
    data = trained_job[0] / "input" / "data" / "test"
    result = Runner(load_pipeline(write_yaml(tmp_path, text)),
                    {"model": str(trained_job[0] / "model"), "data": str(data)},
                    tmp_path / "run", echo=False).run()
    assert result.ok, result.summary()
    outs = sorted(result.outputs("transform")["predictions"].glob("*.out"))
    shards = sorted(p.name for p in data.resolve().glob("*.npy"))
    assert [p.name for p in outs] == [f"{s}.out" for s in shards]
    lines = outs[0].read_text().strip().split("\n")
    assert all("label" in json.loads(line) for line in lines)


def test_containers_run_confined_with_the_steps_limits_and_no_host_network(tmp_path):
    """What the runner hands podman/docker (the images themselves run in make test-images)."""
    from pipelines.definition import Step
    from pipelines.jobs import Engine, Resources

    step = Step("train", "training", {"resources": {"memory_gb": 6, "pids": 512}}, "algorithm")
    engine = Engine("podman", {"algorithm": "registry/algorithm@sha256:0123"})
    command, _ = engine.command("algorithm", ["train"], tmp_path, {tmp_path / "m": "/opt/ml/model"},
                                Resources.of(step, step.spec))
    assert command[:3] == ["podman", "run", "--rm"] and command[-2:] == [
        "registry/algorithm@sha256:0123", "train"]
    for flag in ("--cap-drop=ALL", "--security-opt=no-new-privileges", "--memory=6.0g",
                 "--pids-limit=512", "--network=none"):
        assert flag in command
    served, _ = engine.command("algorithm", ["serve"], tmp_path, {}, Resources(), publish=8123)
    assert "--network=none" not in served and "host" not in served
    assert served[served.index("-p") + 1] == "127.0.0.1:8123:8080"
    assert any(f.startswith("--memory=") and f.endswith("g") for f in served)
    bad = Step("train", "training", {"resources": {"pids": "lots"}}, "algorithm")
    with pytest.raises(PipelineError, match="step train resource pids='lots' is not a valid integer"):
        Resources.of(bad, bad.spec)


FAKE_ENGINE = """#!/bin/sh
# `network ls|inspect|create` as podman answers them; create refuses the subnets listed in $REFUSE
echo "$@" >> "$LOG"
case "$2" in
  ls) echo podman ;;
  inspect) echo '[{"name": "podman", "subnets": [{"subnet": "10.88.0.0/16"}]}]' ;;
  create) case " $REFUSE " in *" $4 "*) echo "Error: subnet $4 is already used on the host" >&2
                                         exit 125 ;; esac ;;
esac
"""


def test_container_networks_avoid_the_engines_subnets_and_retry_a_used_one(tmp_path, monkeypatch):
    """podman's default bridge is 10.88.0.0/16: a job network there fails to create (exit 125)."""
    from pipelines import jobs

    engine = tmp_path / "fake-engine"
    engine.write_text(FAKE_ENGINE)
    engine.chmod(0o755)
    log = tmp_path / "calls.txt"
    monkeypatch.setenv("LOG", str(log))
    monkeypatch.setenv("REFUSE", "10.100.1.0/24")  # used by something the engine does not list
    octets = iter([88, 80, 100, 1, 101, 2])  # inside 10.88.0.0/16, refused, free
    monkeypatch.setattr(jobs.random, "randint", lambda low, high: next(octets))
    assert str(jobs.create_network(str(engine), "job-net")) == "10.101.2.0/24"
    creates = [line.split()[3] for line in log.read_text().splitlines() if " create " in line]
    assert creates == ["10.100.1.0/24", "10.101.2.0/24"]  # 10.88.80.0/24 never tried

    monkeypatch.setattr(jobs.random, "randint", lambda low, high: 100 if low == 64 else 1)
    with pytest.raises(jobs.StepFailed, match="could not create a .* network .* already used"):
        jobs.create_network(str(engine), "job-net")


FAN = """
name: fan
parameters:
  data: {}
  other: {}
steps:
  - name: first
    job: processing
    component: processing
    mode: serve
    inputs: {data: "${params.data}"}
    args: [--image-size, "16"]
    outputs: [data]
  - name: left
    job: processing
    component: processing
    mode: serve
    depends_on: [first]
    inputs: {data: "${params.data}"}
    args: [--image-size, "16"]
    outputs: [data]
  - name: right
    job: processing
    component: processing
    mode: serve
    depends_on: [first]
    inputs: {data: "${params.other}"}
    args: [--image-size, "16"]
    outputs: [data]
  - name: join
    job: condition
    file: "${steps.left.outputs.data}/report.json"
    depends_on: [right]
    all: [{path: images, op: ">=", value: 1}]
"""


def _status(run_dir, step):
    return json.loads((run_dir / step / "status.json").read_text())


def _overlap(a, b):
    return a["started"] < b["finished"] and b["started"] < a["finished"]


def test_independent_steps_run_at_once_each_on_its_own_cpus(tmp_path):
    import os
    cpus = sorted(os.sched_getaffinity(0))
    assert len(cpus) >= 2, "this test needs two CPUs to show two steps at once"
    data = small_images(tmp_path / "images")
    pipeline = load_pipeline(write_yaml(tmp_path, FAN))
    result = Runner(pipeline, {"data": str(data), "other": str(data)}, tmp_path / "run",
                    echo=False, max_parallel=2).run()
    assert result.ok, result.summary()
    first, left, right = (_status(tmp_path / "run", s) for s in ("first", "left", "right"))
    assert first["cpus"] == cpus  # alone, a step has every CPU
    assert _overlap(left, right)
    assert left["cpus"] and right["cpus"] and not set(left["cpus"]) & set(right["cpus"])
    assert len(left["cpus"]) + len(right["cpus"]) == len(cpus)

    serial = Runner(pipeline, {"data": str(data), "other": str(data)}, tmp_path / "serial",
                    echo=False, max_parallel=1).run()
    assert serial.ok
    left, right = (_status(tmp_path / "serial", s) for s in ("left", "right"))
    assert not _overlap(left, right) and left["cpus"] == right["cpus"] == cpus


def test_a_failure_beside_a_running_step_lets_it_finish_and_starts_nothing_more(tmp_path):
    data = small_images(tmp_path / "images")
    empty = tmp_path / "empty"
    empty.mkdir()
    result = Runner(load_pipeline(write_yaml(tmp_path, FAN)),
                    {"data": str(data), "other": str(empty)}, tmp_path / "run", echo=False,
                    max_parallel=2).run()
    assert not result.ok
    assert "no images in" in next(s.detail for s in result.steps if s.name == "right")
    states = {s.name: s.state for s in result.steps}
    assert states == {"first": "completed", "left": "completed", "right": "failed"}


GATE = """
name: gate
parameters:
  model: {}
  test: {}
  registry: {}
steps:
  - name: champion
    job: registered_model
    optional: true
    registry: "${params.registry}"
    model_name: digits
    inputs: {model: null}
  - name: evaluate
    job: processing
    component: algorithm
    mode: evaluate
    inputs: {model: "${params.model}", test: "${params.test}",
             champion: "${steps.champion.outputs.model}"}
    outputs: [evaluation]
  - name: check
    job: condition
    file: "${steps.evaluate.outputs.evaluation}/evaluation.json"
    all: [{path: champion.passed, op: "==", value: true}]
"""


def test_the_gate_holds_a_candidate_less_accurate_than_the_approved_champion(
        tmp_path, trained_job, processed_small):
    """The training pipeline's champion/challenger check, with its real steps: a candidate whose
    classifier was wiped must not pass the approved model; with no approved model it is alone."""
    import torch

    from pipelines.registry import APPROVED, Registry
    from shared.models import load_artifact, save_artifact

    base, _ = trained_job
    broken = load_artifact(base / "model")
    with torch.no_grad():
        for p in broken.network.get_classifier().parameters():
            p.zero_()  # every image gets the same scores: one class for all
    save_artifact(broken, tmp_path / "broken")
    pipeline = load_pipeline(write_yaml(tmp_path, GATE))
    params = {"model": str(tmp_path / "broken"), "test": str(processed_small / "test"),
              "registry": str(tmp_path / "registry")}

    alone = Runner(pipeline, params, tmp_path / "alone", echo=False).run()
    assert alone.ok and alone.state("check") == "completed"
    assert alone.steps[0].detail == "no approved version"

    registry = Registry(tmp_path / "registry", "digits")
    registry.register({"model": base / "model"}, tmp_path)
    registry.set_status(1, APPROVED)
    held = Runner(pipeline, params, tmp_path / "held", echo=False).run()
    assert held.state("check") == "condition-false"
    assert "champion.passed = False == True: no" in held.steps[2].detail


def test_a_parameter_may_default_to_a_training_hyperparameter(tmp_path):
    text = ORDERED.replace("  size: {default: 16}",
                           "  size: {default: 16}\n  epochs: {hyperparameter: epochs}")
    pipeline = load_pipeline(write_yaml(tmp_path, text))
    assert pipeline.resolve_parameters({"data": "/x"})["epochs"] == Hyperparameters().epochs
    assert pipeline.resolve_parameters({"data": "/x", "epochs": "2"})["epochs"] == "2"
    with pytest.raises(PipelineError, match="'epoch' is not a training hyperparameter.*epochs"):
        load_pipeline(write_yaml(tmp_path, text.replace("{hyperparameter: epochs}",
                                                        "{hyperparameter: epoch}"), "bad.yaml"))
    with pytest.raises(PipelineError, match="both a default and a hyperparameter"):
        load_pipeline(write_yaml(tmp_path, text.replace(
            "{hyperparameter: epochs}", "{hyperparameter: epochs, default: 3}"), "both.yaml"))


def test_the_training_pipeline_trains_with_the_jobs_own_defaults():
    """One set of defaults: the pipeline's training hyperparameters are the job's declarations."""
    pipeline = load_pipeline(ROOT / "pipelines" / "training.yaml")
    values = pipeline.resolve_parameters({"input_data": "/x"})
    given = pipeline.steps["train"].spec["hyperparameters"]
    defaults = Hyperparameters()
    for name, value in given.items():
        reference = value.removeprefix("${params.").removesuffix("}")
        if values.get(reference) is not None and name != "accuracy_threshold":
            assert values[reference] == getattr(defaults, name), name


def test_a_parameter_may_default_to_another(tmp_path):
    text = ORDERED.replace("  size: {default: 16}",
                           "  size: {default: 16}\n  other: {default: \"${params.data}\"}")
    pipeline = load_pipeline(write_yaml(tmp_path, text))
    assert pipeline.resolve_parameters({"data": "/x"})["other"] == "/x"
    assert pipeline.resolve_parameters({"data": "/x", "other": "/y"})["other"] == "/y"
    with pytest.raises(PipelineError, match="must name another parameter"):
        load_pipeline(write_yaml(tmp_path, ORDERED.replace(
            "  size: {default: 16}", "  size: {default: \"${params.nope}\"}"), "bad.yaml"))
