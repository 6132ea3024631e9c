"""SyntheticDataModule: seeded random images whose class is learnable, for tests and smoke runs."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from convzoo.checks import check_positive

from .base import ImageDataModule, Split


class SyntheticDataModule(ImageDataModule):
    """``num_samples`` training images (``val_size`` of them held out) and ``test_size`` test images.

    image = (pattern[label] + noise) / 2, uint8, where each class's pattern is a fixed random
    smooth field (4x4 random values upsampled bilinearly), so it survives crop and flip and a
    small network learns it in a few steps. Everything follows from ``seed``; labels are balanced.
    """

    name = "synthetic"

    def __init__(self, num_samples: int = 512, num_classes: int = 10, image_size: int | Sequence[int] = 32,
                 in_chans: int = 3, val_size: int = 128, test_size: int = 128, **base):
        super().__init__(val_size=val_size, **base)
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        for name, value in (("num_samples", num_samples), ("num_classes", num_classes),
                            ("image_size", size), ("in_chans", in_chans), ("test_size", test_size)):
            check_positive(name, value)
        self.num_samples, self.test_size = num_samples, test_size
        self.num_classes, self.in_chans, self.image_size = num_classes, in_chans, size
        self.class_names = [f"class_{i}" for i in range(num_classes)]
        self.has_test = True
        self._set_known_train_size(num_samples)

    def _generate(self) -> tuple[Split, Split]:
        generator = torch.Generator().manual_seed(self.seed)
        coarse = torch.rand(self.num_classes, self.in_chans, 4, 4, generator=generator)
        patterns = F.interpolate(coarse, size=self.image_size, mode="bilinear", align_corners=False) * 255

        def split(n: int) -> Split:
            labels = (torch.arange(n) % self.num_classes)[torch.randperm(n, generator=generator)]
            noise = torch.rand(n, self.in_chans, *self.image_size, generator=generator) * 255
            images = ((patterns[labels] + noise) / 2).round().clamp(0, 255).to(torch.uint8)
            return images, labels

        return split(self.num_samples), split(self.test_size)

    def _load_train_val(self) -> tuple[Split, None]:
        train, self._generated_test = self._generate()
        return train, None

    def _load_test(self) -> Split:
        if getattr(self, "_generated_test", None) is None:
            _, self._generated_test = self._generate()
        return self._generated_test
