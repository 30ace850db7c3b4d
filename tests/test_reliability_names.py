"""Names that become paths cannot escape their folders, and nothing is deleted outside its own.

Tried as an attacker (or an unlucky operator) would: step, input, output and model package names
that point elsewhere, host names in resourceconfig.json, and the runner's own clean-ups.
"""

import json
import textwrap

import pytest
from PIL import Image

from pipelines.definition import load_pipeline
from pipelines.runner import Runner
from shared.errors import UserError
from shared.names import check_name, inside, remove_inside
from shared.sagemaker import load_processing_context
from tests.conftest import run_entrypoint, write_json


def user_images(folder, count=4):
    for i in range(count):
        (folder / "cat").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (i, i, i)).save(folder / "cat" / f"{i}.png")
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


def pipeline_file(tmp_path, text):
    path = tmp_path / "pipeline.yaml"
    path.write_text(textwrap.dedent(text))
    return path


STEP = """
name: attack
parameters: {{data: {{}}}}
steps:
  - name: {name}
    job: processing
    component: processing
    mode: serve
    inputs: {{{input}: "${{params.data}}"}}
    outputs: [{output}]
"""


@pytest.mark.parametrize("field,value", [
    ("name", "../input"), ("name", "../../input"), ("name", "/tmp"), ("name", ".."),
    ("input", "../../x"), ("input", "a/b"), ("output", "../../../input"), ("output", ".hidden"),
])
def test_a_pipeline_naming_a_path_outside_its_folders_is_refused_and_deletes_nothing(
        tmp_path, field, value):
    """The run folder sits beside the user's images; a step named ../input would have had the
    runner delete them before running it."""
    images = tmp_path / "input"
    before = user_images(images)
    names = {k: json.dumps(v) for k, v in
             ({"name": "process", "input": "data", "output": "data"} | {field: value}).items()}
    path = pipeline_file(tmp_path, STEP.format(**names))
    with pytest.raises(UserError, match="is not a valid name"):
        Runner(load_pipeline(path), {"data": str(images)}, tmp_path / "run", echo=False).run()
    assert sorted(p.relative_to(images) for p in images.rglob("*")) == before
    assert not (tmp_path / "run").exists()


def test_the_cli_refuses_it_with_a_reason_and_exit_code_2(tmp_path):
    images = tmp_path / "input"
    before = user_images(images)
    path = pipeline_file(tmp_path, STEP.format(name="../input", input="data", output="data"))
    result = run_entrypoint("pipelines", "run", str(path), "--param", f"data={images}",
                            "--run-dir", str(tmp_path / "run"), base=tmp_path / "opt_ml")
    assert result.returncode == 2
    assert "step name '../input' is not a valid name" in result.stderr
    assert sorted(p.relative_to(images) for p in images.rglob("*")) == before


def test_a_model_package_name_pointing_outside_the_registry_fails_the_step(tmp_path, trained_job):
    text = """
    name: reg
    parameters: {model: {}, registry: {}, package: {}}
    steps:
      - name: register
        job: register
        registry: "${params.registry}"
        model_name: "${params.package}"
        inputs: {model: "${params.model}"}
    """
    params = {"model": str(trained_job[0] / "model"), "registry": str(tmp_path / "registry"),
              "package": "../../outside"}
    result = Runner(load_pipeline(pipeline_file(tmp_path, text)), params, tmp_path / "run",
                    echo=False).run()
    assert not result.ok and "model package name '../../outside'" in result.steps[0].detail
    assert not (tmp_path / "outside").exists() and not (tmp_path / "registry").exists()


@pytest.mark.parametrize("host", ["../../evil", "a/b", ""])
def test_host_names_from_resourceconfig_follow_the_rule(sm_base, host):
    write_json(sm_base / "config" / "resourceconfig.json",
               {"current_host": "algo-1", "hosts": ["algo-1", host]})
    with pytest.raises(UserError, match="host name"):
        load_processing_context()


def test_the_name_rule():
    for good in ("train", "algo-2", "step_1", "v1.2", "A" * 63):
        assert check_name(good, "name") == good
    for bad in ("", ".", "..", "../x", "/abs", "a/b", ".hidden", "-flag", "a b", "A" * 64, 7, None):
        with pytest.raises(UserError):
            check_name(bad, "name")


def test_removal_refuses_targets_outside_the_folder_and_never_follows_links(tmp_path):
    owned, other = tmp_path / "owned", tmp_path / "other"
    (owned / "step").mkdir(parents=True)
    (other / "keep").mkdir(parents=True)
    (owned / "link").symlink_to(other)
    for target in (owned, owned / "..", owned / "step" / ".." / "..", tmp_path / "other",
                   owned / "link" / "keep"):  # through a link: outside once resolved
        with pytest.raises(RuntimeError, match="not inside"):
            remove_inside(owned, target)
    remove_inside(owned, owned / "link")  # the link goes, what it points to stays
    remove_inside(owned, owned / "step")
    assert not (owned / "link").exists() and not (owned / "step").exists()
    assert (other / "keep").is_dir()
    assert inside(owned, owned / "new") == owned / "new"


def test_a_processing_job_on_a_host_with_a_bad_name_fails_with_a_reason(sm_base, tmp_path):
    write_json(sm_base / "config" / "resourceconfig.json",
               {"current_host": "../../x", "hosts": ["../../x"]})
    (sm_base / "processing" / "input").mkdir(parents=True)
    result = run_entrypoint("processing", "serve", base=sm_base)
    assert result.returncode == 2
    assert "is not a valid name" in (sm_base / "output" / "message").read_text()
