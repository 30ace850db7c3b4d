"""Batch norms folded into the convolutions before them: an inference-only rewrite of a network.

In evaluation mode a batch norm is a fixed per-channel scale and shift, which the convolution that
feeds it can absorb into its weights and bias; the norm's own pass over the feature map (memory
traffic, no arithmetic worth the name) then disappears. The answers stay the same to float32
rounding. The network keeps its module tree (each folded norm becomes an `nn.Identity`), so timm's
methods (`forward_features`, `forward_intermediates`, `get_classifier`) work as before.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from shared.models.centre_tap import CentreTapConv2d

CONVOLUTIONS = (nn.Conv2d, CentreTapConv2d)  # exactly these: a plain convolution's arithmetic


class _Tracer(fx.Tracer):
    def is_leaf_module(self, module: nn.Module, name: str) -> bool:
        # a centre-tap convolution branches on its input's size, which a trace cannot follow
        return isinstance(module, CentreTapConv2d) or super().is_leaf_module(module, name)


def conv_norm_pairs(network: nn.Module) -> list[tuple[str, str]]:
    """(convolution, batch norm) module names where the norm alone reads the convolution's output
    and each is called once; none when torch.fx cannot trace the network."""
    try:
        graph = _Tracer().trace(network)
    except Exception:  # noqa: BLE001 - an untraceable network is served as it is
        return []
    modules = dict(network.named_modules())
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
    pairs = []
    for node in graph.nodes:
        # exactly BatchNorm2d: subclasses such as timm's BatchNormAct2d do more than normalise
        if node.op != "call_module" or type(modules.get(node.target)) is not nn.BatchNorm2d:
            continue
        source = node.args[0]
        if (isinstance(source, fx.Node) and source.op == "call_module"
                and type(modules.get(source.target)) in CONVOLUTIONS and len(source.users) == 1
                and calls[source.target] == 1 and calls[node.target] == 1
                and modules[node.target].track_running_stats):
            pairs.append((source.target, node.target))
    return pairs


def _replace(network: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attribute = name.rpartition(".")
    setattr(network.get_submodule(parent) if parent else network, attribute, module)


@torch.no_grad()
def fold_batch_norms(network: nn.Module) -> int:
    """Folds every foldable batch norm of `network` (in evaluation mode) in place; how many."""
    if network.training:
        raise ValueError("batch norms fold only in evaluation mode (call .eval() first)")
    pairs = conv_norm_pairs(network)
    for conv_name, norm_name in pairs:
        fused = fuse_conv_bn_eval(network.get_submodule(conv_name),
                                  network.get_submodule(norm_name))
        _replace(network, conv_name, fused)
        _replace(network, norm_name, nn.Identity())
    return len(pairs)
