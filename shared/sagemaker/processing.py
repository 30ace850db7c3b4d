"""A processing job's runtime context: its folders and this host's share of the work."""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import UserError
from shared.sagemaker.hosts import LOCAL_HOST, HostContext
from shared.sagemaker.inputs import processing_inputs
from shared.sagemaker.paths import JobPaths, read_config


@dataclass(frozen=True, kw_only=True)
class ProcessingContext(HostContext):
    paths: JobPaths


def load_processing_context() -> ProcessingContext:
    """Read `config/resourceconfig.json` and `config/processingjobconfig.json` when present;
    without them (a local run) the job is one host, `algo-1`, and every input is replicated."""
    paths = JobPaths.current()
    resource = read_config(paths.processing_resource_config_file) or {}
    hosts = list(resource.get("hosts") or [LOCAL_HOST])
    current = resource.get("current_host") or hosts[0]
    if current not in hosts:
        raise UserError(f"current_host {current!r} is not among hosts {hosts} in resourceconfig.json")
    job_config = read_config(paths.job_config_file) or {}
    return ProcessingContext(hosts=hosts, current_host=current, paths=paths,
                             inputs=processing_inputs(job_config))
