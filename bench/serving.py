"""Serving throughput: the HTTP batch path versus the same model's forward pass in-process.

resnet10t with 10 classes at 64x64, batches of 64 sent as application/x-npy over a keep-alive
connection to one server worker (all cores for torch), against Predictor.predict on the same
batches in this process with the same thread count and device. One server process can run the same
requests up to 11% slower than another started beside it (3 probes on one machine), so the servers
come in fresh pairs (`server_pair`): one without a drift detector, one whose model carries a
detector on its own features (1,000 reference images, window 100), which tests each request online.
In each pair the two servers and the in-process model take turns, round by round, each side's best
counting; HTTP vs in-process and online drift vs none are each the median of the pairs' ratios.
(A detector with the untrained encoder adds that encoder's forward pass: 0.74x in a quick run at
64 px.) Also one-image-per-request image/png throughput, and, in this process, the model as the
server runs it (`for_serving`: batch norms folded, channels last) against the same model as
trained, and the model's layers alone (bench/layers.py).
Targets: HTTP batch path at least 0.9x in-process (issue 5); online drift at least 0.9x the HTTP
batch path without it (issue 17).
Run: .venv/bin/python -m bench.serving [--batches 30] [--rounds 5] [--pairs 4]
     [--device cpu|cuda] [--quick]
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import io
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
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
IN_PROCESS = "in-process"  # the side beside the servers in a pair's turns


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


def http_rate(port: int, bodies: list[bytes]) -> float:
    """Images/s of the x-npy batches posted to the server at `port`."""
    return len(bodies) * BATCH / post_all(port, bodies, "application/x-npy")


def predict_rate(predict, batches: list[np.ndarray]) -> float:
    """Images/s of `predict` over the batches, in this process."""
    start = time.perf_counter()
    for batch in batches:
        predict(batch)
    return len(batches) * BATCH / (time.perf_counter() - start)


@dataclass
class Pair:
    """Best images/s of each side in one pair's rounds."""

    in_process: float
    plain: float     # HTTP x-npy batches, a server without drift
    watched: float   # the same, a server with online drift
    png: float       # the plain server, image/png, one image per request


def server_pair(base: Path, batches: list[np.ndarray], predict, env: dict[str, str], rounds: int,
                watched_first: bool) -> Pair:
    """A fresh server of each kind (the one to start first alternating between pairs) and the
    in-process `predict`, taking turns in a rotating order, `rounds` turns each."""
    bodies = [npy(b) for b in batches]
    folders = [base / "watched", base] if watched_first else [base, base / "watched"]
    with contextlib.ExitStack() as stack:
        ports = {folder: stack.enter_context(running_server(folder, workers=1, env=env))[1]
                 for folder in folders}
        sides = {IN_PROCESS: lambda: predict_rate(predict, batches)}
        for folder in folders:
            post_all(ports[folder], bodies[:2], "application/x-npy")  # warm-up: the window fills
            sides[folder] = functools.partial(http_rate, ports[folder], bodies)
        best = dict.fromkeys(sides, 0.0)
        order = list(sides)
        for turn in range(rounds):
            for side in order[turn % len(order):] + order[:turn % len(order)]:
                best[side] = max(best[side], sides[side]())
        pngs = [png(image) for image in batches[0]]
        png_rate = len(pngs) / post_all(ports[base], pngs, "image/png")
    return Pair(best[IN_PROCESS], best[base], best[base / "watched"], png_rate)


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


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
        pixels = torch.from_numpy(batches[0]).permute(0, 3, 1, 2).to(device)
        as_trained = load_artifact(base / "model").place(device)  # no for_serving()
        served, unfolded, seconds = 0.0, 0.0, float("inf")
        for _ in range(rounds):  # alternate the sides, keep each one's best (shared machine)
            alone, ceiling_flops = layers_alone(predictor.model, lambda: predictor.model(pixels),
                                                backward=False, device=device)
            seconds = min(seconds, alone)
            served = max(served, predict_rate(predictor.predict, batches))
            unfolded = max(unfolded, predict_rate(
                lambda b: as_trained.probabilities(b, predictor.micro_batch), batches))
        shutil.copytree(base / "model", base / "watched" / "model")
        reference = rng.integers(0, 256, (1000, SIZE, SIZE, 3), dtype=np.uint8)
        DriftDetector.fit(classifier_encoder(base / "model"), reference).save(
            base / "watched" / "model" / "drift")  # on the model's features: one pass
        measured = [server_pair(base, batches, predictor.predict, server_env, rounds,
                                watched_first=bool(i % 2)) for i in range(pairs)]
    workload = (f"{ARCH} 10 classes, {count} batches of {BATCH} at {SIZE}x{SIZE}, one worker with"
                f" {cores} torch threads")
    in_pairs = (f"{workload}; {pairs} fresh pairs of servers, which start first alternating, each"
                f" pair and the in-process model taking turns for {rounds} rounds, each side's best"
                " counting")
    alone_rounds = f"{workload}; best of {rounds} alternating rounds"
    # every in-process figure times the same predict in this process: the sides show the best
    in_process = max([served] + [p.in_process for p in measured])
    return [Comparison("serving", "serving: HTTP x-npy batches vs in-process forward", in_pairs,
                       "in-process forward", in_process,
                       "HTTP x-npy batches", max(p.plain for p in measured), "images/s",
                       target=0.9, device=device.type, flops_per_image=flops,
                       pairs=[p.plain / p.in_process for p in measured],
                       notes=["HTTP image/png, one image per request: "
                              f"{max(p.png for p in measured):,.1f} images/s"]),
            Comparison("serving-fold", "serving: the model as trained vs as served, in-process",
                       alone_rounds + "; served: batch norms folded into the convolutions, weights"
                       " channels last (ImageClassifier.for_serving)", "as trained", unfolded,
                       "as served", served, "images/s", device=device.type),
            Comparison("serving", "serving: the model's layers alone vs in-process forward",
                       alone_rounds + describe(backward=False), SIDE, BATCH / seconds,
                       "in-process forward", in_process, "images/s", device=device.type,
                       flops_per_image=flops, notes=[flops_note(ceiling_flops / BATCH, flops)]),
            Comparison("serving-drift", "serving: online drift per request vs none",
                       in_pairs + "; the detector: the model's own features, 1,000 reference"
                       " images, window 100", "HTTP x-npy batches", max(p.plain for p in measured),
                       "the same with online drift", max(p.watched for p in measured), "images/s",
                       target=0.9, device=device.type,
                       pairs=[p.watched / p.plain for p in measured])]


def main() -> None:
    args_parser = parser(__doc__, "5 batches, one round")
    args_parser.add_argument("--batches", type=int, default=None, help="default 30")
    args_parser.add_argument("--rounds", type=int, default=None, help="default 5")
    args_parser.add_argument("--pairs", type=int, default=None,
                             help="fresh pairs of servers, with and without drift (default 4)")
    args_parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = args_parser.parse_args()
    finish(args, measure(args.batches or (5 if args.quick else 30), args.rounds or (1 if args.quick else 5),
                         args.pairs or (1 if args.quick else 4), torch.device(args.device)))


if __name__ == "__main__":
    main()
