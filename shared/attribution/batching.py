"""Choosing integrated gradients' internal batch size from the memory at hand.

Integrated gradients evaluates the model's gradient at n_steps points per image; the internal batch
size is how many of those points go through one forward and backward pass. Too large runs out of
memory, too small wastes time on per-pass overhead (and on a GPU leaves it idle). The rule, kept
simple so it can be reasoned about:

    per-point cost  = ACTIVATION_FACTOR x (bytes of every layer's output for one input)
    budget          = MEMORY_FRACTION of free GPU memory (CUDA) or of available RAM (CPU)
    batch           = budget // per-point cost, clamped to [1, CPU_CAP or GPU_CAP]

The layer outputs are what autograd keeps for the backward pass; the factor covers the gradients
flowing back through them, the allocator's slack and the interpolated inputs themselves. The CPU
cap exists because a CPU's throughput peaks long before memory runs out: in bench/attribution.py
(resnet10t, 32x32, 2 cores) 250 to 500 points per pass were fastest, 2,000 about 25% slower (every
pass allocates and page-faults fresh memory for its activations), and below 100 each of the model's
many small operations pays its threading overhead.
"""

from __future__ import annotations

import logging

import psutil
import torch
from torch import nn

log = logging.getLogger(__name__)

ACTIVATION_FACTOR = 3.0
MEMORY_FRACTION = 0.5
CPU_CAP = 256
GPU_CAP = 4096


def activation_bytes_per_input(forward: nn.Module, input_shape: tuple[int, ...],
                               device: torch.device) -> int:
    """Bytes of all leaf-module outputs for one input, measured with forward hooks on one pass."""
    total = 0

    def count(_module: nn.Module, _inputs, output) -> None:
        nonlocal total
        outputs = output if isinstance(output, tuple | list) else (output,)
        total += sum(o.numel() * o.element_size() for o in outputs if isinstance(o, torch.Tensor))

    leaves = [m for m in forward.modules() if not list(m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            forward(torch.zeros((1, *input_shape), device=device))
    finally:
        for handle in handles:
            handle.remove()
    input_bytes = 4 * int(torch.tensor(input_shape).prod())
    return total + input_bytes


def available_memory(device: torch.device) -> int:
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return int(psutil.virtual_memory().available)


def auto_internal_batch_size(forward: nn.Module, input_shape: tuple[int, ...],
                             device: torch.device) -> int:
    """How many interpolated inputs to push through one forward/backward pass (see module doc)."""
    per_input = ACTIVATION_FACTOR * activation_bytes_per_input(forward, input_shape, device)
    budget = MEMORY_FRACTION * available_memory(device)
    cap = GPU_CAP if device.type == "cuda" else CPU_CAP
    batch = int(max(1, min(cap, budget // max(per_input, 1))))
    log.info("internal batch size %d (%.1f MB per interpolated input, %.0f MB budget on %s)",
             batch, per_input / 1e6, budget / 1e6, device.type)
    return batch
