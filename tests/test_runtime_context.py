import os
import signal
from dataclasses import dataclass

import pytest

from shared.errors import MissingInputError, UserError
from shared.sagemaker import (
    GracefulStop,
    JobError,
    load_processing_context,
    load_training_context,
    run_job,
)
from shared.schema import SchemaError, setting
from tests.conftest import write_json


@dataclass(frozen=True)
class SPEC:
    epochs: int = setting(2, help="passes", min=1)


def test_training_context_reads_hosts_channels_and_hyperparameters(sm_base):
    config = sm_base / "input" / "config"
    write_json(config / "hyperparameters.json", {"epochs": "7", "sagemaker_program": "train"})
    write_json(config / "resourceconfig.json",
               {"current_host": "algo-2", "hosts": ["algo-1", "algo-2"]})
    write_json(config / "inputdataconfig.json", {"train": {}, "validation": {}})
    ctx = load_training_context(SPEC)
    assert ctx.hyperparameters == SPEC(epochs=7)
    assert ctx.hosts == ["algo-1", "algo-2"] and ctx.current_host == "algo-2"
    assert ctx.host_index == 1 and ctx.first_host == "algo-1" and ctx.host_tag == "algo-2"
    assert ctx.channels == {"train": sm_base / "input" / "data" / "train",
                            "validation": sm_base / "input" / "data" / "validation"}
    assert ctx.paths.model == sm_base / "model"
    assert ctx.paths.failure_file == sm_base / "output" / "failure"


def test_training_context_without_config_files_is_one_local_host(sm_base):
    (sm_base / "input" / "data" / "train").mkdir(parents=True)
    ctx = load_training_context(SPEC)
    assert ctx.hosts == ["algo-1"] and ctx.host_tag is None
    assert ctx.hyperparameters == SPEC()
    assert list(ctx.channels) == ["train"]


def test_training_context_follows_a_changed_base_dir_and_never_writes_home(sm_base, tmp_path,
                                                                           monkeypatch):
    load_training_context(SPEC)
    other = tmp_path / "other_ml"
    write_json(other / "input" / "config" / "inputdataconfig.json", {"test": {}})
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(other))
    assert load_training_context(SPEC).channels == {"test": other / "input" / "data" / "test"}
    assert list((tmp_path / "home").iterdir()) == []


def test_bad_hyperparameter_file_fails_with_the_parameter_named(sm_base):
    write_json(sm_base / "input" / "config" / "hyperparameters.json", {"epochs": "-1"})
    with pytest.raises(SchemaError, match="epochs"):
        load_training_context(SPEC)


def test_processing_context_gives_this_hosts_index(sm_base):
    write_json(sm_base / "config" / "resourceconfig.json",
               {"current_host": "algo-3", "hosts": ["algo-1", "algo-2", "algo-3"]})
    ctx = load_processing_context()
    assert (ctx.host_index, ctx.host_count) == (2, 3)
    assert ctx.output_name("report.json") == "report-algo-3.json"
    assert ctx.paths.processing_input("data") == sm_base / "processing" / "input" / "data"


def test_processing_context_defaults_to_one_host(sm_base):
    ctx = load_processing_context()
    assert (ctx.host_index, ctx.host_count, ctx.current_host) == (0, 1, "algo-1")
    assert ctx.output_name("report.json") == "report.json"


def test_failure_reason_is_written_trimmed_and_exit_code_is_non_zero(tmp_path):
    failure = tmp_path / "output" / "failure"

    def job():
        raise JobError("no training data: " + "x" * 5000)

    assert run_job(job, failure) != 0
    text = failure.read_text()
    assert text.startswith("no training data: ") and len(text) == 1024


@pytest.mark.parametrize("error", [KeyError("boom"), ValueError("boom"), FileNotFoundError("boom")])
def test_errors_that_are_not_the_users_are_reported_as_internal(tmp_path, error):
    """A numpy or torch ValueError deep inside is the suite's fault, not a bad input."""
    failure = tmp_path / "failure"

    def job():
        raise error

    assert run_job(job, failure) == 1
    assert failure.read_text().startswith(f"internal error: {type(error).__name__}: ")


def test_the_users_mistakes_are_reported_as_they_stand(tmp_path):
    failure = tmp_path / "failure"

    def job():
        raise MissingInputError("input folder /x does not exist")

    assert run_job(job, failure) == 2
    assert failure.read_text() == "input folder /x does not exist"


def test_successful_job_writes_no_failure(tmp_path):
    assert run_job(lambda: None, tmp_path / "failure") == 0
    assert not (tmp_path / "failure").exists()


def test_sigterm_sets_the_stop_flag_instead_of_killing_and_the_old_handler_returns():
    before = signal.getsignal(signal.SIGTERM)
    with GracefulStop() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested
    assert signal.getsignal(signal.SIGTERM) is before


def test_malformed_config_json_is_a_clear_error(sm_base):
    (sm_base / "config").mkdir()
    (sm_base / "config" / "resourceconfig.json").write_text("{not json")
    with pytest.raises(UserError, match="resourceconfig.json is not valid JSON"):
        load_processing_context()
