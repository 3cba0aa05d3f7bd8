"""Augmentation of whole batches on tensors: one random affine map per image, one grid_sample call."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from digitrec.recipes import Augment


def random_affine(images: torch.Tensor, augment: Augment, generator: torch.Generator) -> torch.Tensor:
    """Rotate, zoom (x and y independently) and shift each ``(N, C, H, W)`` image at random.

    As in Keras, a zoom factor above 1 samples a larger area, so the digit shrinks; shifts are
    fractions of the image size. Draws come from ``generator`` (on the CPU) for reproducibility.
    """
    n = len(images)

    def uniform(limit: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * 2 - 1) * limit

    angle = uniform(math.radians(augment.rotation))
    zoom_x, zoom_y = 1 + uniform(augment.zoom), 1 + uniform(augment.zoom)
    shift_x, shift_y = uniform(2 * augment.shift), uniform(2 * augment.shift)  # normalised coords span 2
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([
        torch.stack([cos * zoom_x, -sin * zoom_y, shift_x], 1),
        torch.stack([sin * zoom_x, cos * zoom_y, shift_y], 1),
    ], 1).to(images.device, images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
