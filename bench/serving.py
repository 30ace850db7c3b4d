"""Serving throughput: the HTTP batch path versus the same model's forward pass in-process.

One server worker (all cores for torch), resnet10t with 10 classes at 64x64, batches of 64 sent as
application/x-npy over a keep-alive connection, against Predictor.predict on the same batches in
this process with the same thread count and device, alternating for a few rounds, each side's best
counting. Also one-image-per-request image/png throughput. Then the same HTTP batches to a server
whose model carries a drift detector on its own features (1,000 reference images, window 100), which
tests each request online, against a server without one, alternating, on fresh pairs of servers
(`drift_pair`); the ratio is the median of the pairs'. (A detector with the untrained encoder adds
that encoder's forward pass: 0.74x in a quick run at 64 px.)
Also, in this process, the model as the server runs it (`for_serving`: batch norms folded, channels
last) against the same model as trained, and the model's layers alone (bench/layers.py).
Targets: HTTP batch path at least 0.9x in-process (issue 5); online drift at least 0.9x the HTTP
batch path without it (issue 17).
Run: .venv/bin/python -m bench.serving [--batches 30] [--rounds 5] [--drift-pairs 4]
     [--device cpu|cuda] [--quick]
"""

from __future__ import annotations

import contextlib
import http.client
import io
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from algorithm.serve.predictor import Predictor
from bench.common import Comparison, count_flops, finish, parser
from bench.layers import SIDE, describe, flops_note, layers_alone
from pipelines.server import running_server
from shared.drift import DriftDetector, classifier_encoder
from shared.models import ImageClassifier, load_artifact, save_artifact

ARCH, SIZE, BATCH = "resnet10t", 64, 64


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def post_all(port: int, bodies: list[bytes], content_type: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    start = time.perf_counter()
    for body in bodies:
        conn.request("POST", "/invocations", body=body, headers={"Content-Type": content_type})
        response = conn.getresponse()
        response.read()
        assert response.status == 200, response.status
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def predict_rate(predict, batches: list[np.ndarray]) -> float:
    """Images/s of `predict` over the batches, in this process."""
    start = time.perf_counter()
    for batch in batches:
        predict(batch)
    return len(batches) * BATCH / (time.perf_counter() - start)


def drift_pair(base: Path, bodies: list[bytes], env: dict[str, str], rounds: int,
               watched_first: bool) -> tuple[float, float]:
    """(images/s without, with online drift) of a fresh server of each, best of alternating
    rounds. One server process can run the same requests up to 11% slower than another started
    beside it, drift or none (3 probes on one machine), so the comparison takes fresh pairs."""
    folders = [base / "watched", base] if watched_first else [base, base / "watched"]
    with contextlib.ExitStack() as stack:
        ports = {folder: stack.enter_context(running_server(folder, workers=1, env=env))[1]
                 for folder in folders}
        best = dict.fromkeys(folders, 0.0)
        for folder in folders:
            post_all(ports[folder], bodies[:2], "application/x-npy")  # warm-up: the window fills
        for _ in range(rounds):
            for folder in folders:
                best[folder] = max(best[folder], len(bodies) * BATCH / post_all(
                    ports[folder], bodies, "application/x-npy"))
    return best[base], best[base / "watched"]


def measure(count: int, rounds: int, pairs: int, device: torch.device) -> list[Comparison]:
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 256, (BATCH, SIZE, SIZE, 3), dtype=np.uint8) for _ in range(count)]
    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(cores)
    # The server picks the GPU whenever it sees one: hiding it is how the CPU row stays on the CPU.
    server_env = {} if device.type == "cuda" else {"CUDA_VISIBLE_DEVICES": ""}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        save_artifact(ImageClassifier.create(ARCH, [str(i) for i in range(10)], SIZE), base / "model")
        predictor = Predictor(base / "model")
        predictor.device = device
        predictor.load_now()
        with torch.inference_mode():
            flops = count_flops(lambda: predictor.model(
                torch.zeros((1, 3, SIZE, SIZE), dtype=torch.uint8, device=device)))
        predictor.predict(batches[0])  # warm-up
        with running_server(base, workers=1, env=server_env) as (_, port):
            bodies = [npy(b) for b in batches]
            post_all(port, bodies[:2], "application/x-npy")  # warm-up
            pixels = torch.from_numpy(batches[0]).permute(0, 3, 1, 2).to(device)
            in_process, http_batch, seconds = 0.0, 0.0, float("inf")
            for _ in range(rounds):  # alternate the sides, keep each one's best (shared machine)
                alone, ceiling_flops = layers_alone(predictor.model, lambda: predictor.model(pixels),
                                                    backward=False, device=device)
                seconds = min(seconds, alone)
                in_process = max(in_process, predict_rate(predictor.predict, batches))
                http_batch = max(http_batch,
                                 count * BATCH / post_all(port, bodies, "application/x-npy"))
            as_trained = load_artifact(base / "model").place(device)  # no for_serving()
            served, unfolded = 0.0, 0.0
            for _ in range(rounds):
                served = max(served, predict_rate(predictor.predict, batches))
                unfolded = max(unfolded, predict_rate(
                    lambda b: as_trained.probabilities(b, predictor.micro_batch), batches))
            pngs = []
            for image in batches[0]:
                buffer = io.BytesIO()
                Image.fromarray(image).save(buffer, "PNG")
                pngs.append(buffer.getvalue())
            png_rate = len(pngs) / post_all(port, pngs, "image/png")
        shutil.copytree(base / "model", base / "watched" / "model")
        reference = rng.integers(0, 256, (1000, SIZE, SIZE, 3), dtype=np.uint8)
        DriftDetector.fit(classifier_encoder(base / "model"), reference).save(
            base / "watched" / "model" / "drift")  # on the model's features: one pass
        drift_pairs = [drift_pair(base, bodies, server_env, rounds, watched_first=bool(i % 2))
                       for i in range(pairs)]
    workload = (f"{ARCH} 10 classes, {count} batches of {BATCH} at {SIZE}x{SIZE}, one worker with"
                f" {cores} torch threads; best of {rounds} alternating rounds")
    return [Comparison("serving", "serving: HTTP x-npy batches vs in-process forward", workload,
                       "in-process forward", in_process, "HTTP x-npy batches", http_batch,
                       "images/s", target=0.9, device=device.type, flops_per_image=flops,
                       notes=[f"HTTP image/png, one image per request: {png_rate:,.1f} images/s"]),
            Comparison("serving-fold", "serving: the model as trained vs as served, in-process",
                       workload + "; served: batch norms folded into the convolutions, weights"
                       " channels last (ImageClassifier.for_serving)", "as trained", unfolded,
                       "as served", served, "images/s", device=device.type),
            Comparison("serving", "serving: the model's layers alone vs in-process forward",
                       workload + describe(backward=False), SIDE, BATCH / seconds,
                       "in-process forward", in_process, "images/s", device=device.type,
                       flops_per_image=flops, notes=[flops_note(ceiling_flops / BATCH, flops)]),
            Comparison("serving-drift", "serving: online drift per request vs none",
                       f"{ARCH} 10 classes, {count} batches of {BATCH} at {SIZE}x{SIZE}, one worker"
                       f" with {cores} torch threads; {pairs} fresh pairs of servers, which start"
                       f" first alternating, best of {rounds} alternating rounds each; the"
                       f" detector: the model's own features, 1,000 reference images, window 100",
                       "HTTP x-npy batches", max(p for p, _ in drift_pairs),
                       "the same with online drift", max(w for _, w in drift_pairs), "images/s",
                       target=0.9, device=device.type, pairs=[w / p for p, w in drift_pairs])]


def main() -> None:
    args_parser = parser(__doc__, "5 batches, one round")
    args_parser.add_argument("--batches", type=int, default=None, help="default 30")
    args_parser.add_argument("--rounds", type=int, default=None, help="default 5")
    args_parser.add_argument("--drift-pairs", type=int, default=None,
                             help="fresh pairs of servers for online drift (default 4)")
    args_parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = args_parser.parse_args()
    finish(args, measure(args.batches or (5 if args.quick else 30), args.rounds or (1 if args.quick else 5),
                         args.drift_pairs or (1 if args.quick else 4), torch.device(args.device)))


if __name__ == "__main__":
    main()
