"""A ceiling for a model path's FLOP rate: the model's convolutions and linear layers alone.

The utilisation targets (issue #22) are fractions of a large square matmul. A small network's own
layers can run below that matmul even with nothing around them: at 32x32 input, a ResNet's maps
shrink to 1x1 and its stem convolutions have few channels, far from one 2048x2048 product. This
times every convolution and linear layer of the model on its own, at the exact input it receives in
the path (forward; for training also the weight gradients, and the input gradients wherever the
network needs them), in both memory formats (channels first and channels last), and adds each
layer's best time. What the path does around those layers (normalisation, activations, pooling, the
loss, the optimiser, the data) only adds time, so no setting of the rest lifts the path above this
rate.
"""

from __future__ import annotations

import copy
import time

import torch
from torch import nn

from bench.common import count_flops, synchronise

LAYERS = (nn.Conv2d, nn.Linear)
REPEATS = 5
SIDE = "layers alone (a ceiling)"  # the side's name in a Comparison and in BENCHMARKS.md


def describe(backward: bool, times: str = "once a round") -> str:
    """What a ceiling comparison adds to its workload line."""
    return ("; one batch through each convolution and linear layer by itself"
            + (", forward and backward" if backward else "")
            + f", best of {REPEATS} each, {times} (bench/layers.py)")


def flops_note(counted: float, path: float) -> str:
    """The check that the layers alone do the path's own FLOPs (counted / path, per image)."""
    return f"FLOPs counted in the layers alone: {counted / path:.3f}x the path's"


def layer_inputs(network: nn.Module, run) -> list[tuple[nn.Module, torch.Tensor]]:
    """Each convolution and linear layer of `network` with the input `run()` gives it, in order."""
    seen: list[tuple[nn.Module, torch.Tensor]] = []
    hooks = [m.register_forward_hook(lambda m, args, _: seen.append((m, args[0].detach().clone())))
             for m in network.modules() if isinstance(m, LAYERS)]
    try:
        with torch.no_grad():
            run()
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def layers_alone(network: nn.Module, run, backward: bool, repeats: int = REPEATS,
                 device: torch.device | None = None) -> tuple[float, int]:
    """(seconds, FLOPs) of one batch through every layer alone, each at its best of `repeats` in
    either memory format.

    With `backward`, each layer also computes its weight gradients, and its input gradient unless
    it is the first layer (the images need none), as in a training step.
    """
    device = device or next(network.parameters()).device
    layers = []  # per layer, its cases: (layer, input, output gradient) in each memory format
    for index, (layer, x) in enumerate(layer_inputs(network, run)):
        formats = [(layer, x)]
        if x.dim() == 4:  # a copy: the caller's network keeps its own format
            formats.append((copy.deepcopy(layer).to(memory_format=torch.channels_last),
                            x.to(memory_format=torch.channels_last)))
        cases = []
        for module, tensor in formats:
            tensor = tensor.requires_grad_(backward and index > 0)
            with torch.no_grad():
                grad = torch.ones_like(module(tensor)) if backward else None
            cases.append((module, tensor, grad))
        layers.append(cases)

    def one(layer, x, grad) -> None:
        if not backward:
            with torch.inference_mode():
                layer(x)
            return
        layer.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).backward(grad)

    flops = count_flops(lambda: [one(*cases[0]) for cases in layers])
    total = 0.0
    for cases in layers:
        best = float("inf")
        for case in cases:
            for i in range(repeats + 1):  # the first is a warm-up
                synchronise(device)
                start = time.perf_counter()
                one(*case)
                synchronise(device)
                if i:
                    best = min(best, time.perf_counter() - start)
        total += best
    return total, flops
