"""What the app's tests share: a digits classifier trained in a few seconds, and digit PNGs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 16
ARCHITECTURE = "test_resnet"  # timm's own test network: 0.4 M parameters, fast on a CPU
EPOCHS = 4


def train_digits_model(folder: Path) -> Path:
    """A test_resnet trained in-process on every digit (dark ink on white, as the sample data
    writes them), saved as a model artifact; it classifies the training digits almost perfectly."""
    import torch

    from shared.models import ImageClassifier, save_artifact
    from shared.sample_data import digits_images

    images, labels = digits_images(SIZE)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    y = torch.tensor([int(label) for label in labels])
    torch.manual_seed(0)
    classifier = ImageClassifier.create(ARCHITECTURE, [str(c) for c in range(10)], SIZE)
    optimiser = torch.optim.Adam(classifier.parameters(), lr=3e-3)
    classifier.train()
    for _ in range(EPOCHS):
        for batch in torch.randperm(len(x)).split(64):
            loss = torch.nn.functional.cross_entropy(classifier(x[batch]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return save_artifact(classifier.eval(), folder)


def digit_png(index: int, size: int = 32) -> tuple[bytes, str]:
    """The sample data's digit `index` as PNG bytes, and its class."""
    from shared.sample_data import digits_images

    images, labels = digits_images(size)
    buffer = io.BytesIO()
    Image.fromarray(images[index]).save(buffer, format="PNG")
    return buffer.getvalue(), labels[index]
