"""Offline datasets as tensors: scikit-learn's digits, or a generated one for scale tests.

The train/test split is fixed (seed 0) whatever the trial's seed, so every trial of a sweep is
scored on the same test set.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["DATASETS", "Dataset", "batches", "load_dataset"]

DATASETS = ("digits", "synthetic")
SPLIT_SEED = 0


@dataclass(frozen=True)
class Dataset:
    """Images (N, C, H, W) in [0, 1] and integer labels, split into train and test."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    classes: int

    @property
    def in_shape(self) -> tuple[int, int, int]:
        channels, height, width = self.x_train.shape[1:]
        return int(channels), int(height), int(width)

    def to(self, device: torch.device) -> Dataset:
        return Dataset(
            self.x_train.to(device),
            self.y_train.to(device),
            self.x_test.to(device),
            self.y_test.to(device),
            self.classes,
        )


def load_dataset(name: str, *, samples: int = 4000, size: int = 8) -> Dataset:
    """``digits`` (1797 8x8 images, 25% test) or ``synthetic`` (``samples`` noisy class templates
    of ``size`` x ``size``, 10 classes, 25% test)."""
    if name == "digits":
        from sklearn.datasets import load_digits

        data = load_digits()
        images = data.images.astype(np.float32) / 16.0
        labels = data.target.astype(np.int64)
    elif name == "synthetic":
        images, labels = _synthetic(samples, size)
    else:
        raise ValueError(f"dataset must be one of {list(DATASETS)}, got {name!r}")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    n_test = len(labels) // 4
    test, train = order[:n_test], order[n_test:]
    x = torch.from_numpy(images).unsqueeze(1)
    y = torch.from_numpy(labels)
    return Dataset(x[train], y[train], x[test], y[test], classes=int(labels.max()) + 1)


def _synthetic(samples: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Ten smooth random templates plus pixel noise and a random shift of one pixel."""
    rng = np.random.default_rng(SPLIT_SEED)
    coarse = rng.random((10, 4, 4))
    templates = np.kron(coarse, np.ones((size // 4 + 1, size // 4 + 1)))[:, :size, :size]
    labels = rng.integers(0, 10, samples)
    shifts = rng.integers(-1, 2, (samples, 2))
    images = np.stack(
        [np.roll(templates[c], tuple(s), axis=(0, 1)) for c, s in zip(labels, shifts, strict=True)]
    )
    images = np.clip(images + 0.3 * rng.standard_normal(images.shape), 0.0, 1.0)
    return images.astype(np.float32), labels.astype(np.int64)


def batches(
    x: Tensor, y: Tensor, batch_size: int, *, generator: torch.Generator | None = None
) -> Iterator[tuple[Tensor, Tensor]]:
    """Mini-batches in a random order (``generator`` given) or in order."""
    n = x.shape[0]
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    order = order.to(x.device)
    for start in range(0, n, batch_size):
        index = order[start : start + batch_size]
        yield x[index], y[index]
