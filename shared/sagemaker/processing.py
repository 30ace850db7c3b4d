"""A processing job's runtime context: its config files and this host's share of the work."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.sagemaker.failure import run_job
from shared.sagemaker.paths import ProcessingPaths, read_config


@dataclass(frozen=True)
class ProcessingContext:
    paths: ProcessingPaths
    job_config: dict[str, Any]
    hosts: list[str]
    current_host: str

    @property
    def host_index(self) -> int:
        return self.hosts.index(self.current_host)

    @property
    def host_count(self) -> int:
        return len(self.hosts)


def load_processing_context() -> ProcessingContext:
    """Read `config/processingjobconfig.json` and `config/resourceconfig.json` when present.

    Without them (a local run) the job is one host, `algo-1`.
    """
    paths = ProcessingPaths.current()
    resource = read_config(paths.resource_config_file) or {}
    hosts = list(resource.get("hosts") or ["algo-1"])
    current = resource.get("current_host") or hosts[0]
    if current not in hosts:
        raise ValueError(f"current_host {current!r} is not among hosts {hosts} in resourceconfig.json")
    return ProcessingContext(
        paths=paths,
        job_config=read_config(paths.job_config_file) or {},
        hosts=hosts,
        current_host=current,
    )


def run_processing_mode(component: str, args: argparse.Namespace,
                        extra: Callable[[], tuple] = tuple) -> int:
    """Run `<component>.<args.mode>.run(args, ctx, *extra())` as a processing job.

    The mode's module is imported only here, after the flags were checked, so a bad flag is
    reported without waiting for heavy imports; any failure reaches `output/message`.
    """

    def job() -> None:
        mode = importlib.import_module(f"{component}.{args.mode}")
        mode.run(args, load_processing_context(), *extra())

    return run_job(job, ProcessingPaths.current().message_file)
