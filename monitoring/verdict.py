"""`monitoring verdict`: one drift verdict over every host's images of a multi-instance serve.

On several hosts, `monitoring serve` tests each host's share on its own and leaves its features
beside its report (`features-<host>.npz`). This job (one instance) reads all of them from its
`reports` input (the serve job's output prefix), puts them together in host order, and runs the
one MMD test over all the images against the same detector: the same statistic, p-value and
permutations as a single host testing every image would give (tests/test_monitoring.py). Its
`drift.json` is what a pipeline's condition reads.
"""

from __future__ import annotations

import json
import logging
import time

import numpy as np

from monitoring.config import VerdictConfig
from monitoring.serve import FEATURES, REPORT, load_detector, test_and_report
from shared.sagemaker import JobError, load_processing_context
from shared.sagemaker.paths import per_host_name

log = logging.getLogger(__name__)


def run(config: VerdictConfig) -> None:
    started = time.monotonic()
    ctx = load_processing_context()
    detector_dir = config.detector or ctx.paths.processing_input("detector")
    detector = load_detector(detector_dir)
    folder = config.input or ctx.paths.processing_input("reports")
    reports = [json.loads(path.read_text()) for path in sorted(folder.glob("drift*.json"))]
    if not reports:
        raise JobError(f"no drift reports in {folder}: give this job the output of monitoring"
                       " serve (every host's drift-<host>.json and features-<host>.npz)")
    hosts = reports[0]["hosts"]
    if sorted(r["host"] for r in reports) != sorted(hosts):
        raise JobError(f"{folder} holds reports of {sorted(r['host'] for r in reports)}, but the"
                       f" serve job ran on {hosts}: wait for every host, or give the whole output")
    ids = {r["detector"]["detector_id"] for r in reports} | {detector.config.detector_id}
    if len(ids) > 1:
        raise JobError(f"the reports were tested against detector(s) {sorted(ids - {None})}, not"
                       f" only {detector.config.detector_id}: give the detector they used")
    features, names = [], []
    for host in hosts:  # in host order: each host's share follows the previous one in file order
        with np.load(folder / per_host_name(FEATURES, host if len(hosts) > 1 else None),
                     allow_pickle=False) as stored:
            features.append(stored["features"])
            names += [str(n) for n in stored["names"]]
    joined = np.concatenate(features)
    report_dir = config.report_output or ctx.paths.processing_output("report")
    report = test_and_report(
        detector, detector_dir, joined, names, config, report_dir, ctx,
        f"drift of {len(names)} images on {len(hosts)} hosts against detector"
        f" {detector.config.detector_id}",
        {"joined_hosts": hosts, "images_used": len(names),
         "images_found": sum(r["images_found"] for r in reports),
         "skipped": [s for r in reports for s in r["skipped"]],
         "seconds": {"join": round(time.monotonic() - started, 3)}})
    log.info("joined %d hosts' features into one verdict (%s): %s", len(hosts), REPORT,
             "drift" if report["drift"] else "no drift")
