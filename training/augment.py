"""Augmentation for inspection images: the only module that imports albumentations (pinned to MIT 2.0.8).

Geometric transforms only where the product config says the part looks the same transformed (a connector
flipped is a different, wrong connector); photometric ones model lighting drift, focus and sensor noise.
"""

from __future__ import annotations

from collections.abc import Callable

import albumentations as A
import cv2
import numpy as np

from inspection.product_config import AugmentConfig

Augmenter = Callable[[np.ndarray], np.ndarray]


def build_augmenter(config: AugmentConfig, seed: int) -> Augmenter:
    """A function uint8 HxWx3 -> uint8 HxWx3 applying the configured random augmentations, seeded."""
    transforms: list[A.BasicTransform] = []
    if config.hflip:
        transforms.append(A.HorizontalFlip(p=0.5))
    if config.vflip:
        transforms.append(A.VerticalFlip(p=0.5))
    if config.rotate90:
        transforms.append(A.RandomRotate90(p=0.75))
    if config.max_rotate_degrees > 0:
        transforms.append(
            A.Affine(
                rotate=(-config.max_rotate_degrees, config.max_rotate_degrees),
                border_mode=cv2.BORDER_REFLECT_101,
                p=0.5,
            )
        )
    if config.brightness_contrast > 0:
        limit = config.brightness_contrast
        transforms.append(A.RandomBrightnessContrast(brightness_limit=limit, contrast_limit=limit, p=0.8))
    if config.blur_probability > 0:
        # Mild: a stronger blur would erase the hairline cracks and scratches we are trying to learn.
        transforms.append(A.GaussianBlur(blur_limit=(3, 3), sigma_limit=(0.3, 0.9), p=config.blur_probability))
    if config.noise_probability > 0:
        transforms.append(A.GaussNoise(std_range=(0.01, 0.04), p=config.noise_probability))
    pipeline = A.Compose(transforms, seed=seed)

    def augment(image: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(pipeline(image=image)["image"])

    return augment
