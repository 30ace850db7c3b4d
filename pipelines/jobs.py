"""How each kind of step runs: laid out exactly as SageMaker lays out that kind of job.

Every job gets its own `/opt/ml` folder (`<step dir>/opt_ml`). Inputs are linked in (local engine)
or mounted read-only (container engines); outputs are the folders the component writes.

A container runs with no capabilities, no new privileges, and the step's memory and process
limits (`resources:` in the step, else the defaults below); jobs get no network at all, and the
Batch Transform's model server is reached through a port published on 127.0.0.1 only.

Steps that run at the same time each get CPUs of their own (`taskset`, or `--cpuset-cpus` for a
container), as separate instances would: a torch job whose threads share a core with another
job's slows down many times over, not twice.

A processing or training step may run on several instances (`instances: N`), as SageMaker runs
it: hosts algo-1..algo-N, each with its own /opt/ml and resource config, all started together.
Inputs named in `sharded:` are split among the hosts by key (file path), as `ShardedByS3Key`
does; the others reach every host whole (`FullyReplicated`). The hosts' processing outputs are
gathered into one folder per output, as their uploads to one S3 prefix would be. Training hosts
talk over a private network of their own (containers) or the loopback interface (local engine).

An engine may carry `stop_when`, polled while a job runs (every half second): a reason from it
stops the job as SageMaker's StopTrainingJob does (SIGTERM; a training job stops after the current
batch) and fails the step with `stopped: <reason>`. The tuner prunes trials this way.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from pipelines import warm
from pipelines.definition import PipelineError, Step
from pipelines.server import ROOT, free_port, request, running_server
from shared import schema
from shared.atomic import write_json_atomic
from shared.names import remove_inside
from shared.schema import setting

SERVING_PORT = 8080  # SageMaker's, inside the container
SHARDED, REPLICATED = "ShardedByS3Key", "FullyReplicated"


class StepFailed(RuntimeError):
    """A step's job exited non-zero; the message is its own failure reason."""


class StepStopped(StepFailed):
    """A step's job was stopped on request (the engine's `stop_when` gave a reason)."""


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
    cpus: tuple[int, ...] | None = None  # the CPUs its jobs run on (None: all of them)
    stop_when: Callable[[], str | None] | None = None  # polled while a job runs: a reason stops it
    warm: bool = True  # local jobs fork from a process with the libraries imported (pipelines.warm)

    @property
    def popen(self) -> Callable[..., Any]:
        """What starts a job's process: subprocess.Popen's signature."""
        return warm.popen if self.name == "local" and self.warm else subprocess.Popen

    def image(self, component: str) -> str:
        if self.images and component in self.images:
            return self.images[component]
        return f"sagemaker-image-mlops-{component}:latest"

    def command(self, component: str, args: list[str], base: Path, mounts: dict[Path, str],
                resources: Resources, publish: int | None = None,
                pass_env: tuple[str, ...] = (),
                network: HostNetwork | None = None) -> tuple[list[str], dict[str, str]]:
        """The job's command line; `publish` gives the container a network and publishes its
        serving port as this host port, on 127.0.0.1 only; `network` puts it on its cluster's
        private network (a job with neither has no network)."""
        cpu_list = ",".join(map(str, self.cpus or ()))
        if self.name == "local":
            env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "PYTHONPATH": str(ROOT),
                   **(network.local_env if network else {})}
            pin = ["taskset", "-c", cpu_list] if cpu_list else []
            return [*pin, sys.executable, "-m", component, *args], env
        options = [*CONFINED, *resources.flags()]
        if cpu_list:
            options.append(f"--cpuset-cpus={cpu_list}")
        if publish:
            options += ["-p", f"127.0.0.1:{publish}:{SERVING_PORT}"]
        elif network:
            options += network.flags()
        else:
            options += ["--network=none"]
        for source, target in mounts.items():
            options += ["-v", f"{Path(source).resolve()}:{target}"]
        for name in pass_env:
            options += ["-e", name]
        return [self.name, "run", "--rm", *self.run_args, *options, self.image(component), *args], \
            dict(os.environ)


@dataclass(frozen=True)
class HostNetwork:
    """One host's place on its cluster's network: its name, and every host's address."""

    host: str
    name: str  # the container network's
    addresses: dict[str, str]  # host -> IP address
    local_env: dict[str, str] = field(default_factory=dict)  # the local engine's equivalent

    def flags(self) -> list[str]:
        return [f"--network={self.name}", f"--ip={self.addresses[self.host]}",
                f"--hostname={self.host}",
                *(f"--add-host={h}:{ip}" for h, ip in self.addresses.items())]


@dataclass(frozen=True)
class Cluster:
    """The hosts of one step, algo-1..algo-N, each with its own /opt/ml under the step folder."""

    step_dir: Path
    hosts: list[str]
    sharded: frozenset[str]  # inputs split among the hosts; the others reach each host whole

    @classmethod
    def of(cls, step: Step, spec: dict[str, Any], step_dir: Path) -> Cluster:
        try:
            count = schema.from_strings(Instances, {"instances": spec.get("instances", 1)},
                                        what=f"step {step.name}").instances
        except schema.SchemaError as exc:
            raise PipelineError(str(exc)) from None
        sharded = spec.get("sharded") or []
        unknown = sorted(set(sharded) - set(spec.get("inputs") or {}))
        if not isinstance(sharded, list) or unknown:
            raise PipelineError(f"step {step.name}: sharded must list some of its inputs"
                                f" ({', '.join(spec.get('inputs') or {})}); not {unknown}")
        return cls(step_dir, [f"algo-{i}" for i in range(1, count + 1)], frozenset(sharded))

    def base(self, host: str) -> Path:
        """A host's /opt/ml: one host keeps the single-instance layout, `<step>/opt_ml`."""
        return self.step_dir / "opt_ml" if len(self.hosts) == 1 else self.step_dir / host / "opt_ml"

    def resource_config(self, host: str, interface: str) -> dict[str, Any]:
        return {"current_host": host, "hosts": self.hosts, "network_interface_name": interface}

    def distribution(self, name: str) -> str:
        return SHARDED if name in self.sharded else REPLICATED

    def host_inputs(self, host: str, inputs: dict[str, Path]) -> dict[str, Path]:
        """What each input gives `host`: all of it, or for a sharded input every N-th file by
        path (hard links in `<step>/shards/<host>/<input>`), as S3 key sharding would."""
        given = {}
        for name, source in inputs.items():
            if name not in self.sharded or len(self.hosts) == 1:
                given[name] = source
                continue
            part = self.step_dir / "shards" / host / name
            files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [
                source]
            part.mkdir(parents=True, exist_ok=True)
            for path in files[self.hosts.index(host)::len(self.hosts)]:
                target = part / path.relative_to(source if source.is_dir() else source.parent)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(path, target)
            given[name] = part
        return given

    @contextmanager
    def network(self, engine: Engine) -> Iterator[dict[str, HostNetwork]]:
        """Each host's network for a job whose hosts talk (training): a container network with a
        fixed address per host, or the loopback interface for the local engine."""
        if engine.name == "local":
            env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
            yield {h: HostNetwork(h, "lo", {}, env) for h in self.hosts}
            return
        name = f"sagemaker-image-mlops-{uuid.uuid4().hex[:12]}"
        subnet = create_network(engine.name, name)
        addresses = {h: str(subnet[10 + i]) for i, h in enumerate(self.hosts)}
        try:
            yield {h: HostNetwork(h, name, addresses) for h in self.hosts}
        finally:
            subprocess.run([engine.name, "network", "rm", "-f", name], capture_output=True)


NETWORK_ATTEMPTS = 8


def engine_subnets(engine: str) -> list[ipaddress.IPv4Network]:
    """The subnets of the engine's existing networks (podman's default bridge is 10.88.0.0/16)."""
    names = subprocess.run([engine, "network", "ls", "--format", "{{.Name}}"], capture_output=True,
                           text=True).stdout.split()
    if not names:
        return []
    found = subprocess.run([engine, "network", "inspect", *names], capture_output=True, text=True)
    subnets = []
    for network in json.loads(found.stdout or "[]"):
        entries = [e.get("subnet") for e in network.get("subnets") or []]  # podman
        entries += [c.get("Subnet") for c in (network.get("IPAM") or {}).get("Config") or []]  # docker
        for entry in filter(None, entries):
            net = ipaddress.ip_network(entry, strict=False)
            if net.version == 4:
                subnets.append(net)
    return subnets


def create_network(engine: str, name: str) -> ipaddress.IPv4Network:
    """Create network `name` on a random /24 in 10.64.0.0/10 that overlaps none of the engine's
    networks; one that collides with what the engine cannot list (a host interface, a network
    made meanwhile) is retried on another subnet. Returns the subnet."""
    taken = engine_subnets(engine)
    error = ""
    for _ in range(NETWORK_ATTEMPTS):
        subnet = ipaddress.ip_network(f"10.{random.randint(64, 127)}.{random.randint(0, 255)}.0/24")
        if any(subnet.overlaps(t) for t in taken):
            continue
        made = subprocess.run([engine, "network", "create", "--subnet", str(subnet), name],
                              capture_output=True, text=True)
        if made.returncode == 0:
            return subnet
        error = made.stderr.strip()
        taken.append(subnet)
    raise StepFailed(f"could not create a {engine} network for the job's hosts in"
                     f" {NETWORK_ATTEMPTS} attempts: {error or 'every subnet tried was in use'}")


@dataclass(frozen=True)
class Instances:
    instances: int = setting(1, min=1, max=16, help="hosts the job runs on, as SageMaker's"
                                                    " instance count")


def _link(source: Path, target: Path, base: Path) -> None:
    """`target` (inside the job's /opt/ml `base`) becomes a link to `source`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_inside(base, target)
    target.symlink_to(Path(source).resolve())


@dataclass(frozen=True)
class HostJob:
    """One host's part of a step: its command, environment and where its failure reason goes."""

    host: str
    command: list[str]
    env: dict[str, str]
    reason_file: Path


def _run(jobs: list[HostJob], log_file: Path, engine: Engine) -> None:
    """Start every host's job together and wait for all; the first failure stops the others (a
    training host would otherwise wait for its peer forever) and is the step's reason. A reason
    from the engine's `stop_when` (asked every half second) stops them all."""
    logs = [log_file if len(jobs) == 1 else log_file.with_name(f"log-{j.host}.txt") for j in jobs]
    procs = []
    for job, log in zip(jobs, logs, strict=True):
        with open(log, "a") as out:
            procs.append(engine.popen(job.command, env=job.env, stdout=out,
                                      stderr=subprocess.STDOUT, cwd=ROOT))
    failed = stopped = None
    try:
        pending = dict(enumerate(procs))
        while pending and failed is None and not stopped:
            for index, proc in list(pending.items()):
                try:
                    code = proc.wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    continue
                del pending[index]
                if code != 0:
                    failed = index
                    break
            if engine.stop_when is not None and pending and failed is None:
                stopped = engine.stop_when()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
    if stopped:
        raise StepStopped(f"stopped: {stopped}")
    if failed is not None:
        job, log = jobs[failed], logs[failed]
        reason = job.reason_file.read_text().strip() if job.reason_file.is_file() else ""
        where = f"{job.host}: " if len(jobs) > 1 else ""
        raise StepFailed(where + (reason or f"exited with code {procs[failed].returncode}; see"
                                            f" {log}"))


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
    cluster = Cluster.of(step, spec, step_dir)
    inputs = _inputs(spec)
    args = [step.mode, *[str(a) for a in spec.get("args") or []]]
    jobs = []
    for host in cluster.hosts:
        base = cluster.base(host)
        mounts = _attach(cluster.host_inputs(host, inputs), base, "processing/input")
        for folder in ("processing/output", "output", "config"):
            (base / folder).mkdir(parents=True, exist_ok=True)
        write_json_atomic(base / "config" / "resourceconfig.json",
                          cluster.resource_config(host, "eth0"))
        write_json_atomic(base / "config" / "processingjobconfig.json", {"ProcessingInputs": [
            {"InputName": name, "S3Input": {"LocalPath": f"/opt/ml/processing/input/{name}",
                                            "S3DataDistributionType": cluster.distribution(name),
                                            "S3InputMode": "File"}} for name in inputs]})
        mounts.update({base / "processing" / "output": "/opt/ml/processing/output",
                       base / "output": "/opt/ml/output", base / "config": "/opt/ml/config:ro"})
        command, env = engine.command(step.component, args, base, mounts, Resources.of(step, spec))
        jobs.append(HostJob(host, command, env, base / "output" / "message"))
    _run(jobs, log_file, engine)
    names = spec.get("outputs") or []
    if len(cluster.hosts) == 1:
        return {name: cluster.base(cluster.hosts[0]) / "processing" / "output" / name
                for name in names}
    return {name: gather_output(cluster, name) for name in names}


def gather_output(cluster: Cluster, name: str) -> Path:
    """Every host's files of output `name` in one folder, as their uploads to one S3 prefix would
    be; two hosts writing one name with different content is a fault of the job (per-host names
    prevent it; a file every host writes alike, such as classes.json, is one object)."""
    gathered = cluster.step_dir / "output" / name
    gathered.mkdir(parents=True, exist_ok=True)
    for host in cluster.hosts:
        folder = cluster.base(host) / "processing" / "output" / name
        for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
            target = gathered / path.relative_to(folder)
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            elif not target.exists():
                shutil.copy2(path, target)
            elif target.read_bytes() != path.read_bytes():  # the same file twice is one object
                raise StepFailed(f"hosts wrote different files {target.relative_to(gathered)} into"
                                 f" output {name}: per-host file names must keep them apart")
    return gathered


def training_job(step: Step, spec: dict[str, Any], step_dir: Path, engine: Engine,
                 log_file: Path) -> dict[str, Path]:
    cluster = Cluster.of(step, spec, step_dir)
    channels = _inputs(spec)
    hyperparameters = {k: str(v) for k, v in (spec.get("hyperparameters") or {}).items()}
    with cluster.network(engine) as networks:
        jobs = []
        for host in cluster.hosts:
            base = cluster.base(host)
            mounts = _attach(cluster.host_inputs(host, channels), base, "input/data")
            config = base / "input" / "config"
            write_json_atomic(config / "hyperparameters.json", hyperparameters)
            interface = "lo" if engine.name == "local" else "eth0"
            write_json_atomic(config / "resourceconfig.json",
                              cluster.resource_config(host, interface))
            write_json_atomic(config / "inputdataconfig.json", {
                c: {"TrainingInputMode": "File", "S3DistributionType": cluster.distribution(c)}
                for c in channels})
            for folder in ("model", "output", "checkpoints"):
                (base / folder).mkdir(parents=True, exist_ok=True)
                mounts[base / folder] = f"/opt/ml/{folder}"
            mounts[config] = "/opt/ml/input/config:ro"
            command, env = engine.command(step.component, ["train"], base, mounts,
                                          Resources.of(step, spec),
                                          network=networks[host] if len(cluster.hosts) > 1
                                          else None)
            jobs.append(HostJob(host, command, env, base / "output" / "failure"))
        _run(jobs, log_file, engine)
    first = cluster.base(cluster.hosts[0])  # only the first host writes the model
    return {"model": first / "model", "output_data": first / "output" / "data"}


def transform_job(step: Step, spec: dict[str, Any], step_dir: Path, engine: Engine,
                  log_file: Path) -> dict[str, Path]:
    """Batch Transform, SplitType None: one request per input file, `<file>.out` per answer."""
    inputs = _inputs(spec)
    if "model" not in inputs or "data" not in inputs:
        raise PipelineError(f"step {step.name}: a transform needs inputs model and data")
    if spec.get("instances", 1) not in (1, "1"):
        raise PipelineError(f"step {step.name}: the local Batch Transform runs one model server;"
                            " instances applies to processing and training steps")
    base = step_dir / "opt_ml"
    _link(inputs["model"], base / "model", base)
    out = step_dir / "output"
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(inputs["data"].glob("*.npy"))
    if not files:
        raise StepFailed(f"no .npy shards to transform in {inputs['data']}")
    accept = spec.get("accept", "application/jsonlines")
    port = free_port()
    if engine.name == "local":
        command, _ = engine.command("algorithm", ["serve", "--host", "127.0.0.1"], base, {},
                                    Resources.of(step, spec))
    else:  # the model read-only, as SageMaker mounts it
        command, _ = engine.command("algorithm", ["serve"], base,
                                    {inputs["model"]: "/opt/ml/model:ro"}, Resources.of(step, spec),
                                    publish=port, pass_env=("SAGEMAKER_MODEL_SERVER_WORKERS",))
    with open(log_file, "a") as log, running_server(base, workers=int(spec.get("workers", 1)),
                                                     command=command, port=port,
                                                     popen=engine.popen) as (_, port):
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
