"""Batch augmentation: random affine jitter that moves digits but keeps them digits."""

from __future__ import annotations

import torch

from digitrec.augment import random_warp
from digitrec.recipes import Augment


def _square() -> torch.Tensor:
    image = torch.zeros(1, 1, 28, 28)
    image[..., 10:18, 10:18] = 1.0
    return image


def test_no_jitter_leaves_images_unchanged():
    images = _square().repeat(4, 1, 1, 1)
    out = random_warp(images, Augment(), torch.Generator().manual_seed(0))
    assert torch.allclose(out, images, atol=1e-5)


def test_shifts_move_the_ink_by_at_most_the_given_fraction():
    images = _square().repeat(64, 1, 1, 1)
    out = random_warp(images, Augment(shift=0.1), torch.Generator().manual_seed(0))
    cols = torch.arange(28.0)
    centre = (out.sum(2).squeeze(1) * cols).sum(1) / out.sum((1, 2, 3))
    assert (centre - 13.5).abs().max() <= 0.1 * 28 + 0.5
    assert (centre - 13.5).abs().max() > 0.5  # something did move


def test_elastic_warps_bend_the_ink_but_leave_it_in_place():
    images = _square().repeat(64, 1, 1, 1)
    out = random_warp(images, Augment(elastic=36, elastic_sigma=6), torch.Generator().manual_seed(0))
    changed = (out - images).abs().sum((1, 2, 3)) / images.sum((1, 2, 3))
    assert changed.min() > 0.05  # every square is bent…
    assert torch.allclose(out.sum((1, 2, 3)), images.sum((1, 2, 3)), rtol=0.4)  # …stretches or squeezes it…
    cols = torch.arange(28.0)
    centre = (out.sum(2).squeeze(1) * cols).sum(1) / out.sum((1, 2, 3))
    assert (centre - 13.5).abs().max() < 3  # …and leaves it about where it was


def test_same_generator_seed_gives_the_same_batch():
    images = _square().repeat(8, 1, 1, 1)
    jitter = Augment(rotation=10, zoom=0.1, shift=0.1, elastic=36)
    first = random_warp(images, jitter, torch.Generator().manual_seed(3))
    second = random_warp(images, jitter, torch.Generator().manual_seed(3))
    assert torch.equal(first, second)
    assert not torch.equal(first[0], first[1])  # every image gets its own draw


def test_a_share_of_a_batch_is_warped_as_the_whole_batch_would_warp_it():
    images = torch.rand(10, 1, 28, 28)
    jitter = Augment(rotation=10, zoom=0.1, shift=0.1, elastic=30, elastic_sigma=5)
    whole = random_warp(images, jitter, torch.Generator().manual_seed(7))
    rows = torch.tensor([1, 2, 3, 8])  # a process's digits and strangers among the batch's draws
    share = random_warp(images[rows], jitter, torch.Generator().manual_seed(7), rows=rows, total=10)
    assert torch.allclose(share, whole[rows], atol=1e-6)
