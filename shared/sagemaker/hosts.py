"""The hosts a SageMaker job runs on (resourceconfig.json), which one this process is, and which
part of each input is this host's to process."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from shared.errors import UserError
from shared.names import check_name
from shared.sagemaker.inputs import PIPE, InputConfig
from shared.sagemaker.paths import per_host_name

LOCAL_HOST = "algo-1"  # what SageMaker calls the only host of a one-instance job
T = TypeVar("T")
log = logging.getLogger(__name__)


def host_share(items: Sequence[T], host_index: int, host_count: int) -> list[T]:
    """Host `host_index` of `host_count`'s contiguous share: disjoint, and together complete."""
    if not 0 <= host_index < host_count:
        raise ValueError(f"host index {host_index} is outside 0..{host_count - 1}")
    n = len(items)
    return list(items[host_index * n // host_count : (host_index + 1) * n // host_count])


@dataclass(frozen=True, kw_only=True)
class HostContext:
    hosts: list[str]
    current_host: str
    inputs: dict[str, InputConfig] = field(default_factory=dict)  # how each input arrived

    def __post_init__(self) -> None:
        for host in self.hosts:  # host names go into output file names
            check_name(host, "host name in resourceconfig.json")

    @property
    def host_index(self) -> int:
        return self.hosts.index(self.current_host)

    @property
    def host_count(self) -> int:
        return len(self.hosts)

    @property
    def first_host(self) -> str:
        """The host that coordinates (DDP's master, the one that writes shared results)."""
        return self.hosts[0]

    @property
    def host_tag(self) -> str | None:
        """This host's name where several hosts share the outputs, else None."""
        return self.current_host if self.host_count > 1 else None

    def output_name(self, name: str) -> str:
        """`name` for a file this host writes into a shared output (`per_host_name`)."""
        return per_host_name(name, self.host_tag)

    def input_config(self, name: str) -> InputConfig:
        """How input `name` arrived; a readable one (not Pipe mode) or a UserError saying why."""
        config = self.inputs.get(name, InputConfig(name))
        if config.mode == PIPE:
            raise UserError(f"the {name!r} input is in Pipe mode, which this job cannot read: give"
                            " it in File or FastFile mode (input_mode='File' or 'FastFile')")
        return config

    def share(self, name: str | None, items: Sequence[T]) -> list[T]:
        """This host's share of what input `name` holds: all of it when SageMaker sharded the
        input (`ShardedByS3Key`: each host received its own part), else this host's slice of the
        whole (`FullyReplicated`, or a folder given by flag: `name` None)."""
        if name is not None and self.input_config(name).sharded:
            log.info("input %r is sharded by S3 key: this host processes all %d items it received",
                     name, len(items))
            return list(items)
        return host_share(items, self.host_index, self.host_count)
