"""One JSON line per request on stdout: the access log and CloudWatch metrics at once.

Each line is in CloudWatch's Embedded Metric Format, so an endpoint's log group yields the metrics
(namespace METRICS_NAMESPACE, dimension Route) with no agent, and the same line is a searchable
access-log record. Strings from the client (the path) are JSON-escaped: a `%0a` in a path cannot
forge a line. Attacker-chosen paths all count under the route "other", so they cannot create
metrics.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

from werkzeug.datastructures import Headers
from werkzeug.wrappers import Request, Response

from shared.drift.online import OnlineState

METRICS_NAMESPACE = "ImageClassification/Serving"
ROUTES = ("/ping", "/invocations", "/execution-parameters")
METRICS = [{"Name": "Latency", "Unit": "Milliseconds"}, {"Name": "Images", "Unit": "Count"},
           {"Name": "4XXError", "Unit": "Count"}, {"Name": "5XXError", "Unit": "Count"},
           {"Name": "QueueDepth", "Unit": "Count"}]
DRIFT_METRICS = [{"Name": "DriftStatistic", "Unit": "None"}, {"Name": "Drift", "Unit": "Count"}]
# The one response header SageMaker passes from the container to the caller of InvokeEndpoint.
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"


class AccessLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()  # whole lines: the worker's threads share stdout
        self.worker = os.getpid()

    def write(self, request: Request, response: Response, images: int, seconds: float,
              queue_depth: int, drift: OnlineState | None = None) -> None:
        status = response.status_code
        out = response.calculate_content_length()
        metrics = METRICS + (DRIFT_METRICS if drift and drift.statistic is not None else [])
        record = {
            "_aws": {"Timestamp": int(time.time() * 1000),
                     "CloudWatchMetrics": [{"Namespace": METRICS_NAMESPACE,
                                            "Dimensions": [["Route"]], "Metrics": metrics}]},
            "Route": request.path if request.path in ROUTES else "other",
            "Latency": round(seconds * 1000, 3),
            "Images": images,
            "4XXError": int(400 <= status < 500),
            "5XXError": int(status >= 500),
            "QueueDepth": queue_depth,
            "method": request.method,
            "path": request.path,
            "status": status,
            "bytes_in": request.content_length or 0,
            "bytes_out": out or 0,
            "worker": self.worker,
        }
        if drift is not None:
            record.update(drift.to_json())
            if drift.statistic is not None:
                record.update({"DriftStatistic": drift.statistic, "Drift": int(drift.drift)})
        line = json.dumps(record) + "\n"
        with self._lock:
            sys.stdout.write(line)
            sys.stdout.flush()


def custom_top_k(headers: Headers, default: int) -> int:
    """`top_k=N` from SageMaker's CustomAttributes header (other attributes are the caller's own and
    left alone); ValueError says what is wrong with it."""
    for part in headers.get(CUSTOM_ATTRIBUTES, "").replace(",", ";").split(";"):
        key, _, value = part.partition("=")
        if key.strip() == "top_k":
            value = value.strip()
            if not value.isdigit() or int(value) < 1:
                raise ValueError(f"CustomAttributes top_k={value!r}: expected a whole number of at"
                                 " least 1")
            return int(value)
    return default


def drift_attributes(drift: OnlineState) -> str:
    """The online drift state as CustomAttributes: the body format stays what callers parse."""
    if drift.statistic is None:
        return f"drift=false,drift_window={min(drift.seen, drift.window)}/{drift.window}"
    return (f"drift={str(drift.drift).lower()},drift_statistic={drift.statistic:.6g},"
            f"drift_threshold={drift.threshold:.6g}")
