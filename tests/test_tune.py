"""`python -m pipelines tune`: an Optuna study over the training pipeline's real training job, on
tiny images (two colours, 16 px, resnet10t, 3 epochs).

One study is killed for real while a trial runs and then resumed; the tests below read what it
left. Its three trials are enqueued, so every outcome is fixed: trial 0 trains 3 epochs at a
learning rate of 1e-9 (it learns nothing: chance accuracy, the validation cross-entropy of a
guess), trial 1 at 0.002 (all correct, far lower cross-entropy), trial 2
at 1e-9 for 10,000 epochs, which the kill interrupts; the resumed study fails trial 2, tries it
again as trial 3, and the pruner (median of the completed trials, from the first epoch) stops it
after one epoch. A job that must be stopped runs 10,000 epochs, so only the stop can end it,
however fast the machine.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from PIL import Image

from pipelines.__main__ import main
from pipelines.definition import load_pipeline
from pipelines.runner import Runner
from pipelines.search_space import load_search_space
from pipelines.tune import Tuner, only
from tests.serving import wait_until

ROOT = Path(__file__).resolve().parent.parent
SPACE = ("learning_rate: {low: 1.0e-9, high: 0.01, log: true}\nlabel_smoothing: {low: 0.0, high: 0.1}\n"
         "epochs: {choices: [3, 10000]}\n")
BAD, GOOD = "learning_rate=1e-9", "learning_rate=0.002"
SHORT, ENDLESS = "epochs=3", "epochs=10000"  # ENDLESS: a job only a stop ends


def colour_images(root: Path, per_class: int = 30) -> Path:
    """Noisy red and blue squares: learnt in one epoch, never by chance."""
    rng = np.random.default_rng(0)
    for name, colour in (("red", (200, 40, 40)), ("blue", (40, 40, 200))):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 40, (16, 16, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.png")
    return root


def tune_args(images: Path, run_dir: Path, space: Path, *more: str) -> list[str]:
    return ["tune", str(ROOT / "pipelines" / "training.yaml"), "--param", f"input_data={images}",
            "--param", "image_size=16", "--param", "augment_copies=0", "--param",
            "model_name=resnet10t", "--param", "epochs=3", "--param", "batch_size=32",
            "--search-space", str(space), "--run-dir", str(run_dir), "--seed", "0",
            "--pruner-startup-trials", "1", "--pruner-warmup-epochs", "0", *more]


def load(run_dir: Path) -> optuna.Study:
    return optuna.load_study(study_name="training", storage=f"sqlite:///{run_dir / 'study.db'}")


def start_tune(args: list[str], log: Path, env: dict[str, str], **popen) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "pipelines", *args], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, **popen)


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    (root / "space.yaml").write_text(SPACE)
    env = {**os.environ, "HOME": str(root / "home"), "MPLCONFIGDIR": str(root / "mpl")}
    return colour_images(root / "images"), root / "space.yaml", env


@pytest.fixture(scope="module")
def resumed(setting, tmp_path_factory):
    """The study, killed (SIGKILL, tuner and job alike) once trial 2's job runs, then resumed."""
    images, space, env = setting
    run_dir = tmp_path_factory.mktemp("study") / "run"
    args = tune_args(images, run_dir, space, "--trials", "3",
                     "--enqueue", f"{BAD},{SHORT}", "--enqueue", f"{GOOD},{SHORT}",
                     "--enqueue", f"{BAD},{ENDLESS}")
    log = run_dir.parent / "first.log"
    tuner = start_tune(args, log, env, start_new_session=True)
    try:
        wait_until(lambda: (run_dir / "trial-002" / "train" / "log.txt").exists(),
                   "trial 2's training job", tuner, log, timeout=600)
    finally:
        os.killpg(tuner.pid, signal.SIGKILL)  # the tuner and its training job
        tuner.wait()
    before = {t.number: t for t in load(run_dir).trials}
    process_status = (run_dir / "process" / "status.json").read_text()
    output = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(output):
        for name in ("HOME", "MPLCONFIGDIR"):
            patch.setenv(name, env[name])
        code = main(args)
    return {"run_dir": run_dir, "before": before, "code": code, "output": output.getvalue(),
            "process_status": process_status, "study": load(run_dir)}


def test_a_killed_study_resumes_and_never_reruns_a_finished_trial(resumed):
    before, study = resumed["before"], resumed["study"]
    assert [before[n].state.name for n in sorted(before)] == ["COMPLETE", "COMPLETE", "RUNNING"]
    assert resumed["code"] == 0, resumed["output"]
    assert "2 of 3 trials finished" in resumed["output"]
    trials = study.trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL", "PRUNED"]
    for number in (0, 1):  # kept as they were, trained once
        assert trials[number].datetime_complete == before[number].datetime_complete
        assert trials[number].value == before[number].value
        log = resumed["run_dir"] / f"trial-{number:03d}" / "train" / "log.txt"
        assert log.read_text().count("training job:") == 1
    assert trials[3].user_attrs["retry_of"] == 2 and trials[3].params == trials[2].params
    # the data was processed once, before the kill, and every trial reused it
    assert (resumed["run_dir"] / "process" / "status.json").read_text() == \
        resumed["process_status"]


def test_a_trial_below_the_median_is_pruned_and_its_job_stopped(resumed):
    trials = resumed["study"].trials
    # the objective is validation:nll, minimised; a learning rate of 1e-9 learns nothing
    assert trials[1].value < 0.5 * trials[0].value
    pruned = trials[3]  # trial 0's hyperparameters and seed: its first epoch again
    assert list(pruned.intermediate_values) == [1]
    assert pruned.intermediate_values[1] == pytest.approx(trials[0].intermediate_values[1], abs=2e-3)
    step = resumed["run_dir"] / "trial-003" / "train"
    status = json.loads((step / "status.json").read_text())
    assert status["state"] == "failed" and status["detail"].startswith("stopped: pruned at epoch 1")
    assert "epoch=10000 " not in (step / "log.txt").read_text()
    assert not (step / "opt_ml" / "model" / "model.json").exists()


def test_the_study_writes_its_best_trial_a_trials_table_and_plots(resumed):
    run_dir = resumed["run_dir"]
    best = json.loads((run_dir / "best.json").read_text())
    assert best["trial"] == 1 and best["metric"] == "validation:nll" and best["objective"] == "Minimize"
    assert best["value"] == resumed["study"].trials[1].value
    assert best["hyperparameters"]["learning_rate"] == "0.002"  # as the job received them
    assert best["hyperparameters"]["model_name"] == "resnet10t"  # the pipeline's own
    assert best["trials"] == {"completed": 2, "pruned": 1, "failed": 1}
    with open(run_dir / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["trial"], r["state"]) for r in rows] == [
        ("0", "COMPLETE"), ("1", "COMPLETE"), ("2", "FAIL"), ("3", "PRUNED")]
    assert "tried again as trial 3" in rows[2]["note"] and rows[3]["epochs_logged"] == "1"
    assert rows[3]["epochs"] == "10000"  # the hyperparameter, its own column
    assert float(rows[1]["learning_rate"]) == 0.002
    for plot in ("optimization_history.png", "param_importances.png"):
        assert (run_dir / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_registering_reuses_the_best_trials_processing_and_training(resumed, setting):
    images, space, _ = setting
    params = {"input_data": str(images), "image_size": "16", "augment_copies": "0",
              "model_name": "resnet10t", "epochs": "3", "batch_size": "32"}
    tuner = Tuner(load_pipeline(ROOT / "pipelines" / "training.yaml"), params,
                  resumed["run_dir"], load_search_space(space))
    pipeline = only(tuner.best_pipeline(resumed["study"]), tuner.train.name)
    result = Runner(pipeline, params, resumed["run_dir"] / "trial-001", echo=False,
                    resume=True).run()
    assert [(s.name, s.state) for s in result.steps] == [("process", "reused"), ("train", "reused")]


def test_resuming_with_another_search_space_is_refused(resumed, setting, tmp_path, capsys):
    images, _, _ = setting
    other = tmp_path / "other.yaml"
    other.write_text("learning_rate: {low: 1.0e-4, high: 0.01, log: true}\n")
    assert main(tune_args(images, resumed["run_dir"], other, "--trials", "4")) == 2
    assert "was started with other settings" in capsys.readouterr().err
    assert len(load(resumed["run_dir"]).trials) == 4  # nothing ran


def test_sigterm_stops_the_running_job_and_enqueues_its_trial_again(setting, tmp_path):
    images, space, env = setting
    run_dir, log = tmp_path / "run", tmp_path / "tune.log"
    tuner = start_tune(tune_args(images, run_dir, space, "--trials", "1",
                                 "--enqueue", f"{GOOD},{ENDLESS}"), log, env)
    try:
        wait_until(lambda: (run_dir / "trial-000" / "train" / "log.txt").exists(),
                   "trial 0's training job", tuner, log, timeout=300)
        tuner.send_signal(signal.SIGTERM)
        assert tuner.wait(timeout=120) == 130, log.read_text()[-3000:]
    finally:
        if tuner.poll() is None:
            tuner.kill()
    # the runner records a step only once its job has exited
    status = json.loads((run_dir / "trial-000" / "train" / "status.json").read_text())
    assert status["detail"] == "stopped: the tuner was interrupted"
    first, again = load(run_dir).trials
    assert first.state.name == "FAIL" and again.state.name == "WAITING"
    assert again.user_attrs == {"retry_of": 0, "retry_reason": "the tuner was interrupted"}
    assert "resume with the same command" in log.read_text()


@pytest.mark.parametrize("text,message", [
    ("learnin_rate: {low: 1.0e-4, high: 0.1}", "did you mean learning_rate?"),
    ("seed: {choices: [1, 2]}", "seed is not tunable; tunable hyperparameters: epochs"),
    ("learning_rate: {low: 1.0e-4, high: 20}", "learning_rate high=20 is out of range;"
                                               " expected a finite number between 0 and 10"),
    ("optimizer: {choices: [adamw, nadam]}", "valid choices: adam, adamw, sgd, rmsprop"),
    ("optimizer: {low: 1, high: 2}", "optimizer: expected {choices: [...]}"),
    ("batch_size: {low: 8.5, high: 64}", "batch_size low=8.5 is not a valid integer"),
    ("weight_decay: {low: 0.0, high: 0.1, log: true}", "a log range must start above 0"),
    ("label_smoothing: {low: 0.2, high: 0.1}", "low (0.2) must be below high (0.1)"),
    ("[learning_rate]", "expected a mapping of hyperparameter names"),
])
def test_a_bad_search_space_is_refused_naming_what_is_valid(text, message, tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text(text)
    assert main(tune_args(tmp_path, tmp_path / "run", space, "--trials", "1")) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text,message", [
    ("learning_rate=0.5", "--enqueue learning_rate=0.5: outside the search space"),
    ("epochs=3,epochs=10000", "--enqueue 'epochs=3,epochs=10000': epochs is given twice"),
])
def test_a_bad_enqueued_trial_is_refused(text, message, tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    assert main(tune_args(tmp_path, tmp_path / "run", space, "--trials", "1",
                          "--enqueue", text)) == 2
    assert message in capsys.readouterr().err


def test_the_default_search_space_holds_only_tunable_hyperparameters():
    space = load_search_space()
    assert set(space) == {"learning_rate", "batch_size", "weight_decay", "label_smoothing",
                          "optimizer"}
