"""The DataModule: processed-dataset shards, memory-mapped, fetched a whole batch at a time.

Batches stay uint8 until they reach the device, where the module normalises them: a quarter of
the bytes through the loader and the host-to-device copy.

Under DDP each rank reads its own part of a channel (`ShareSampler`): of the whole channel when
SageMaker replicated it to every host, of its own host's part when SageMaker sharded it by S3 key
(no image is then re-split across hosts, and none leaves the host it was sent to).
"""

from __future__ import annotations

import logging

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from shared.data import ProcessedDataset

log = logging.getLogger(__name__)


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


class ShareSampler(Sampler[int]):
    """One rank's indices of the images its host holds, `per_rank` of them every epoch.

    The host's images are ordered (shuffled by seed and epoch, or not) and the `replicas` ranks
    that share them take every `replicas`-th one from their own `rank`. Every rank yields the same
    number, the most any rank needs (DDP's ranks must step together), repeating some of its own
    where it has fewer: each image is read at least once an epoch, by one rank only (bar those
    repeats).
    """

    def __init__(self, length: int, *, replicas: int, rank: int, per_rank: int, shuffle: bool,
                 seed: int) -> None:
        if length < replicas:
            raise ValueError(f"{length} images cannot be shared by {replicas} processes")
        self.length, self.replicas, self.rank = length, replicas, rank
        self.per_rank, self.shuffle, self.seed = per_rank, shuffle, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # Lightning calls it before every epoch
        self.epoch = epoch

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(self.length,
                                   generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.length)
        mine = order[self.rank::self.replicas].tolist()
        return iter((mine * (self.per_rank // len(mine) + 1))[:self.per_rank])

    def __len__(self) -> int:
        return self.per_rank


def collate(batch):
    images, labels = zip(*batch, strict=True)
    return torch.stack(images), torch.stack(labels)


class ProcessedDataModule(pl.LightningDataModule):
    """Train and validation loaders; `sharded` names the channels SageMaker sharded by S3 key."""

    def __init__(self, train: ProcessedDataset, validation: ProcessedDataset, *, batch_size: int,
                 num_workers: int, augment: bool, sharded: frozenset[str] = frozenset(),
                 seed: int = 0) -> None:
        super().__init__()
        self.datasets = {"train": ShardDataset(train, augment=augment),
                         "validation": ShardDataset(validation)}
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.sharded = sharded
        self.seed = seed

    def sampler(self, channel: str, shuffle: bool) -> ShareSampler | None:
        """Under DDP, this rank's part of the channel (see ShareSampler); None on one process."""
        trainer = self.trainer
        if trainer is None or trainer.world_size == 1:
            return None
        length = len(self.datasets[channel])
        if channel in self.sharded:  # this host's part, among this host's processes
            replicas, rank = trainer.num_devices, trainer.local_rank
        else:
            replicas, rank = trainer.world_size, trainer.global_rank
        need = torch.tensor(-(-length // replicas), device=trainer.strategy.root_device)
        per_rank = int(trainer.strategy.reduce(need, reduce_op="max"))
        log.info("rank %d reads %d %s images an epoch of the %d its host holds (%s)",
                 trainer.global_rank, per_rank, channel, length,
                 "sharded by S3 key" if channel in self.sharded else "replicated")
        return ShareSampler(length, replicas=replicas, rank=rank, per_rank=per_rank,
                            shuffle=shuffle, seed=self.seed)

    def _loader(self, channel: str, shuffle: bool) -> DataLoader:
        sampler = self.sampler(channel, shuffle)
        return DataLoader(self.datasets[channel], batch_size=self.batch_size,
                          shuffle=shuffle and sampler is None, sampler=sampler,
                          num_workers=self.num_workers, collate_fn=collate,
                          persistent_workers=self.num_workers > 0,
                          pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", shuffle=False)
