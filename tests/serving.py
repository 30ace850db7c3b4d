"""The tests start the real server through the same helper the pipeline runner uses."""

from pipelines.server import free_port, request, running_server, stop_process

__all__ = ["free_port", "request", "running_server", "stop_process"]
