"""Putting saved weights into a network: all of them, exactly, or the ones that fit.

A model artifact or a detector must fit its network exactly (anything else means the files do not
belong together). Pretrained weights and a warm start with a new head take what fits, by name and
shape, and say what they left out.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from shared.models.safety import UnsafeArtifactError

log = logging.getLogger(__name__)


def load_exact(network: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load `state` into `network`; every tensor must be there with its shape, and no other."""
    expected = {k: tuple(v.shape) for k, v in network.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if expected != got:
        wrong = sum(expected[k] != got[k] for k in expected.keys() & got.keys())
        raise UnsafeArtifactError(
            f"{what} (missing {len(expected.keys() - got.keys())} tensors, unexpected"
            f" {len(got.keys() - expected.keys())}, wrong shape {wrong})")
    network.load_state_dict(state, strict=True)


def load_matching(network: nn.Module, state: dict[str, torch.Tensor], source: str) -> int:
    """Load the tensors of `state` whose name and shape fit `network`; how many it loaded."""
    own = network.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    network.load_state_dict(usable, strict=False)
    log.info("loaded %d tensors from %s; skipped %d (e.g. the old head), %d left as they were",
             len(usable), source, len(state) - len(usable), len(own) - len(usable))
    return len(usable)
