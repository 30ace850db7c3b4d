"""Convolutions that see a 1 x 1 feature map run as 1 x 1 convolutions of their centre tap.

On a 1 x 1 map, a "same"-padded k x k convolution reads the one pixel through its centre tap
alone: every other tap multiplies padding zeros. oneDNN (torch's CPU convolutions) still computes
all k x k taps, and its backward pass on such maps is pathologically slow: for resnet10t at 32 px,
layer4's 512 -> 512 convolution on its 1 x 1 map took 55 ms of a 170 ms training step (its forward
pass 5 ms). The last stage of a stride-32 network is 1 x 1 for any image up to 32 px, so small
images train faster with the crop (bench/training.py compares). Cropping the weight to its
centre tap gives the same outputs (to float32 rounding) and the same gradients: the other taps'
gradients are exactly zero either way. The weights keep their shape, so state dicts, checkpoints
and saved models do not change.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional


class CentreTapConv2d(nn.Conv2d):
    """An `nn.Conv2d` whose 1 x 1 inputs on a CPU take the centre tap only (see the module)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] == (1, 1) and x.device.type == "cpu":  # measured on CPUs only
            kh, kw = self.kernel_size
            centre = self.weight[:, :, kh // 2:kh // 2 + 1, kw // 2:kw // 2 + 1]
            return functional.conv2d(x, centre, self.bias, 1, 0, 1, self.groups)
        return super().forward(x)


def croppable(conv: nn.Module) -> bool:
    """Whether `conv` is a plain k x k convolution (k > 1, odd) padded with zeros to keep the
    size: the only taps a 1 x 1 input reaches are then the centres, at any stride."""
    if type(conv) is not nn.Conv2d or conv.padding_mode != "zeros":
        return False
    if not isinstance(conv.padding, tuple):  # "same"/"valid" strings: timm pads with numbers
        return False
    return conv.kernel_size != (1, 1) and all(
        k % 2 == 1 and p == d * (k - 1) // 2
        for k, p, d in zip(conv.kernel_size, conv.padding, conv.dilation, strict=True))


def crop_centre_taps(network: nn.Module) -> int:
    """Makes every croppable convolution of `network` a `CentreTapConv2d`, in place (the class
    only: parameters, names and hooks stay); how many."""
    convs = [m for m in network.modules() if croppable(m)]
    for conv in convs:
        conv.__class__ = CentreTapConv2d
    return len(convs)
