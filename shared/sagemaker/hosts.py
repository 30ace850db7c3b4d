"""The hosts a SageMaker job runs on (resourceconfig.json) and which one this process is."""

from __future__ import annotations

from dataclasses import dataclass

from shared.names import check_name
from shared.sagemaker.paths import per_host_name

LOCAL_HOST = "algo-1"  # what SageMaker calls the only host of a one-instance job


@dataclass(frozen=True)
class HostContext:
    hosts: list[str]
    current_host: str

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
