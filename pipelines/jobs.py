"""How each kind of step runs: laid out exactly as SageMaker lays out that kind of job.

Every job gets its own `/opt/ml` folder (`<step dir>/opt_ml`). Inputs are linked in (local engine)
or mounted read-only (container engines); outputs are the folders the component writes.

A container runs with no capabilities, no new privileges, and the step's memory and process
limits (`resources:` in the step, else the defaults below); jobs get no network at all, and the
Batch Transform's model server is reached through a port published on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from pipelines.definition import PipelineError, Step
from pipelines.server import ROOT, free_port, request, running_server
from shared import schema
from shared.names import remove_inside
from shared.schema import setting

SERVING_PORT = 8080  # SageMaker's, inside the container
HOST_CONFIG = {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}


class StepFailed(RuntimeError):
    """A step's job exited non-zero; the message is its own failure reason."""


def default_memory_gb() -> float:
    """Three quarters of this machine's memory: a runaway job is stopped before the host is."""
    return round(0.75 * psutil.virtual_memory().total / 1024**3, 1)


@dataclass(frozen=True)
class Resources:
    """A step's `resources:` in the pipeline YAML: the container's limits."""

    memory_gb: float | None = setting(None, above=0, help="memory limit (none: 3/4 of the host's)")
    pids: int = setting(4096, min=64, help="processes and threads the container may have")

    @classmethod
    def of(cls, step: Step, spec: dict[str, Any]) -> Resources:
        try:
            return schema.from_strings(cls, spec.get("resources") or {},
                                       what=f"step {step.name} resource")
        except schema.SchemaError as exc:
            raise PipelineError(str(exc)) from None

    def flags(self) -> list[str]:
        return [f"--memory={self.memory_gb or default_memory_gb()}g", f"--pids-limit={self.pids}"]


# No capabilities and no privilege gain: a job needs none (it writes only folders it owns).
CONFINED = ("--cap-drop=ALL", "--security-opt=no-new-privileges")


@dataclass
class Engine:
    """`local` runs the entrypoints in subprocesses; `docker`/`podman` run the images."""

    name: str = "local"
    images: dict[str, str] | None = None
    run_args: tuple[str, ...] = ()

    def image(self, component: str) -> str:
        if self.images and component in self.images:
            return self.images[component]
        return f"sagemaker-image-mlops-{component}:latest"

    def command(self, component: str, args: list[str], base: Path, mounts: dict[Path, str],
                resources: Resources, publish: int | None = None,
                pass_env: tuple[str, ...] = ()) -> tuple[list[str], dict[str, str]]:
        """The job's command line; `publish` gives the container a network and publishes its
        serving port as this host port, on 127.0.0.1 only (a job with no port has no network)."""
        if self.name == "local":
            env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "PYTHONPATH": str(ROOT)}
            return [sys.executable, "-m", component, *args], env
        options = [*CONFINED, *resources.flags()]
        options += ["-p", f"127.0.0.1:{publish}:{SERVING_PORT}"] if publish else ["--network=none"]
        for source, target in mounts.items():
            options += ["-v", f"{Path(source).resolve()}:{target}"]
        for name in pass_env:
            options += ["-e", name]
        return [self.name, "run", "--rm", *self.run_args, *options, self.image(component), *args], \
            dict(os.environ)


def _link(source: Path, target: Path, base: Path) -> None:
    """`target` (inside the job's /opt/ml `base`) becomes a link to `source`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_inside(base, target)
    target.symlink_to(Path(source).resolve())


def _run(command: list[str], env: dict[str, str], log_file: Path, reason_file: Path) -> None:
    with open(log_file, "a") as log:
        result = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    if result.returncode != 0:
        reason = reason_file.read_text().strip() if reason_file.is_file() else ""
        raise StepFailed(reason or f"exited with code {result.returncode}; see {log_file}")


def _inputs(spec: dict[str, Any]) -> dict[str, Path]:
    inputs = {}
    for name, value in (spec.get("inputs") or {}).items():
        if value is None or value == "":
            continue  # an optional input left unset
        path = Path(value)
        if not path.exists():
            raise StepFailed(f"input {name} does not exist: {path}")
        inputs[name] = path
    return inputs


def _attach(inputs: dict[str, Path], base: Path, folder: str) -> dict[Path, str]:
    """Link each input under `<base>/<folder>/<name>`; the same places as read-only mounts."""
    for name, path in inputs.items():
        _link(path, base / folder / name, base)
    return {path: f"/opt/ml/{folder}/{name}:ro" for name, path in inputs.items()}


def processing_job(step: Step, spec: dict[str, Any], step_dir: Path, engine: Engine,
                   log_file: Path) -> dict[str, Path]:
    base = step_dir / "opt_ml"
    mounts = _attach(_inputs(spec), base, "processing/input")
    (base / "processing" / "output").mkdir(parents=True, exist_ok=True)
    (base / "output").mkdir(parents=True, exist_ok=True)
    (base / "config").mkdir(parents=True, exist_ok=True)
    (base / "config" / "resourceconfig.json").write_text(json.dumps(HOST_CONFIG))
    mounts.update({base / "processing" / "output": "/opt/ml/processing/output",
                   base / "output": "/opt/ml/output", base / "config": "/opt/ml/config:ro"})
    args = [step.mode, *[str(a) for a in spec.get("args") or []]]
    command, env = engine.command(step.component, args, base, mounts, Resources.of(step, spec))
    _run(command, env, log_file, base / "output" / "message")
    return {name: base / "processing" / "output" / name for name in spec.get("outputs") or []}


def training_job(step: Step, spec: dict[str, Any], step_dir: Path, engine: Engine,
                 log_file: Path) -> dict[str, Path]:
    base = step_dir / "opt_ml"
    channels = _inputs(spec)
    mounts = _attach(channels, base, "input/data")
    config = base / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    hyperparameters = {k: str(v) for k, v in (spec.get("hyperparameters") or {}).items()}
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (config / "resourceconfig.json").write_text(json.dumps(HOST_CONFIG))
    (config / "inputdataconfig.json").write_text(json.dumps(
        {c: {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"}
         for c in channels}))
    for folder in ("model", "output", "checkpoints"):
        (base / folder).mkdir(parents=True, exist_ok=True)
        mounts[base / folder] = f"/opt/ml/{folder}"
    mounts[config] = "/opt/ml/input/config:ro"
    command, env = engine.command(step.component, ["train"], base, mounts,
                                  Resources.of(step, spec))
    _run(command, env, log_file, base / "output" / "failure")
    return {"model": base / "model", "output_data": base / "output" / "data"}


def transform_job(step: Step, spec: dict[str, Any], step_dir: Path, engine: Engine,
                  log_file: Path) -> dict[str, Path]:
    """Batch Transform, SplitType None: one request per input file, `<file>.out` per answer."""
    inputs = _inputs(spec)
    if "model" not in inputs or "data" not in inputs:
        raise PipelineError(f"step {step.name}: a transform needs inputs model and data")
    base = step_dir / "opt_ml"
    _link(inputs["model"], base / "model", base)
    out = step_dir / "output"
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(inputs["data"].glob("*.npy"))
    if not files:
        raise StepFailed(f"no .npy shards to transform in {inputs['data']}")
    accept = spec.get("accept", "application/jsonlines")
    port, command = free_port(), None
    if engine.name != "local":  # the model read-only, as SageMaker mounts it
        command, _ = engine.command("algorithm", ["serve"], base,
                                    {inputs["model"]: "/opt/ml/model:ro"}, Resources.of(step, spec),
                                    publish=port, pass_env=("SAGEMAKER_MODEL_SERVER_WORKERS",))
    with open(log_file, "a") as log, running_server(base, workers=int(spec.get("workers", 1)),
                                                     command=command, port=port) as (_, port):
        status, params, _ = request(port, "GET", "/execution-parameters")
        limit = params.get("MaxPayloadInMB", 6) if status == 200 else 6
        for path in files:
            body = path.read_bytes()
            if len(body) > limit * 1024 * 1024:
                raise StepFailed(f"{path.name} is {len(body):,} bytes, over the server's"
                                 f" MaxPayloadInMB {limit}")
            status, answer, _ = request(port, "POST", "/invocations", body,
                                        {"Content-Type": "application/x-npy", "Accept": accept},
                                        timeout=600)
            if status != 200:
                raise StepFailed(f"{path.name}: the model server answered {status}: {answer}")
            text = answer if isinstance(answer, str) else json.dumps(answer)
            (out / f"{path.name}.out").write_text(text)
            log.write(f"transformed {path.name}\n")
    return {"predictions": out}
