"""The DataModule: processed-dataset shards, memory-mapped, fetched a whole batch at a time.

Batches stay uint8 until they reach the device, where the module normalises them: a quarter of
the bytes through the loader and the host-to-device copy.
"""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from shared.data import ProcessedDataset


class ShardDataset(Dataset):
    """(uint8 CHW image, label) pairs; `__getitems__` lets the loader fetch a batch in one call."""

    def __init__(self, data: ProcessedDataset, augment: bool = False) -> None:
        self.data = data
        self.labels = data.labels
        self.augment = augment

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]):
        images = torch.from_numpy(self.data.images(indices)).permute(0, 3, 1, 2)
        labels = torch.from_numpy(self.labels[np.asarray(indices)])
        if self.augment:
            images = augment_batch(images)
        return list(zip(images, labels, strict=True))


def augment_batch(images: torch.Tensor) -> torch.Tensor:
    """Light online augmentation: random shifts of up to 1/16 of the side and small rotations."""
    from torchvision.transforms import v2

    transform = v2.RandomAffine(degrees=10, translate=(0.0625, 0.0625))
    return torch.stack([transform(image) for image in images])


def collate(batch):
    images, labels = zip(*batch, strict=True)
    return torch.stack(images), torch.stack(labels)


class ProcessedDataModule(pl.LightningDataModule):
    def __init__(self, train: ProcessedDataset, validation: ProcessedDataset, *, batch_size: int,
                 num_workers: int, augment: bool) -> None:
        super().__init__()
        self.train_data = ShardDataset(train, augment=augment)
        self.val_data = ShardDataset(validation)
        self.batch_size = batch_size
        self.num_workers = num_workers

    def _loader(self, data: ShardDataset, shuffle: bool) -> DataLoader:
        return DataLoader(data, batch_size=self.batch_size, shuffle=shuffle,
                          num_workers=self.num_workers, collate_fn=collate,
                          persistent_workers=self.num_workers > 0,
                          pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_data, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_data, shuffle=False)
