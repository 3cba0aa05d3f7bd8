"""Things that are not one digit, drawn in MNIST's format, for outlier exposure (Hendrycks et al. 2019).

A model trained only on digits has never seen anything else, and softmax confidence alone cannot
tell a letter, a doodle or two digits from a digit. Outlier exposure adds such images to training
with a target of "no class more than another" (a uniform distribution), so that the model's
confidence on them falls and the ``uncertain`` flag catches them.

The outliers are drawn, with no extra data, at MNIST's pen width and in its layout (the longer side
20 px, centred in 28x28), as the preprocessing of a real image would bring them: polygons, stars
and crosses, and hash marks and grids. Only shapes that no digit resembles: letter-like glyphs,
doodles and pairs or overlays of training digits were measured too, and cost accuracy on MNIST
(0.2 to 0.4 points with the balanced preset) and on real digits, for little gain (BENCHMARKS.md).
One bank is drawn per run from its seed, so a resumed run sees the same.
"""

from __future__ import annotations

import math

import torch

from digitrec.mnist_format import BOX, FIELD

KINDS = ("polygon", "hatch")


def bank(count: int, seed: int) -> torch.Tensor:
    """``count`` outliers as uint8 ``(count, 28, 28)``, white on black, an equal share of each of :data:`KINDS`."""
    generator = torch.Generator().manual_seed(seed)
    share = -(-count // len(KINDS))
    made = [_polygons(share, generator), _hatches(share, generator)]
    images = torch.cat(made)[torch.randperm(share * len(KINDS), generator=generator)[:count]]
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


def _uniform(generator: torch.Generator, *shape: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    return low + (high - low) * torch.rand(*shape, generator=generator)


def _render(paths: torch.Tensor, widths: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """Polylines ``(N, strokes, points, 2)`` in the unit square -> ``(N, 28, 28)`` ink, fitted to the 20 px box.

    A pixel's ink falls off linearly over one pixel from the pen's edge: MNIST's anti-aliased rim.
    A stroke whose points are all NaN is absent.
    """
    n = len(paths)
    flat = paths.reshape(n, -1, 2)
    known = ~flat.isnan().any(-1)
    low = torch.where(known[..., None], flat, torch.inf).amin(1)
    high = torch.where(known[..., None], flat, -torch.inf).amax(1)
    scale = (BOX - widths) / (high - low).amax(1).clamp_min(1e-3)  # the pen's rim stays inside the box
    centre = (FIELD - 1) / 2 - scale[:, None] * (low + high) / 2
    points = paths * scale[:, None, None, None] + centre[:, None, None, :]
    start, end = points[:, :, :-1].reshape(n, -1, 2), points[:, :, 1:].reshape(n, -1, 2)
    axis = torch.arange(FIELD, dtype=torch.float32)
    pixels = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1).reshape(-1, 2)  # (784, 2) as x, y
    images = []
    for first in range(0, n, chunk):
        a, b = start[first : first + chunk, :, None], end[first : first + chunk, :, None]  # (c, segments, 1, 2)
        along = b - a
        t = (((pixels - a) * along).sum(-1) / (along * along).sum(-1).clamp_min(1e-6)).clamp(0, 1)
        distance = (pixels - (a + t[..., None] * along)).norm(dim=-1).nan_to_num(torch.inf).amin(1)
        images.append((widths[first : first + chunk, None] / 2 + 0.5 - distance).clamp(0, 1))
    return torch.cat(images).reshape(n, FIELD, FIELD)


def _pen(n: int, generator: torch.Generator) -> torch.Tensor:
    return _uniform(generator, n, low=1.8, high=3.2)  # MNIST's strokes in the 20 px box


def _polygons(n: int, generator: torch.Generator) -> torch.Tensor:
    """Closed polygons of three to six corners, stars among them, and crosses."""
    corners = 7
    sides = torch.randint(3, corners, (n, 1), generator=generator)
    step = torch.arange(corners + 1)[None, :].clamp(max=sides)  # close the polygon, then repeat the last corner
    angle = 2 * math.pi * step / sides + _uniform(generator, n, 1, high=2 * math.pi)
    star = (_uniform(generator, n, 1) < 0.3) & (step % 2 == 1)
    radius = torch.where(star, 0.45, 1.0) * _uniform(generator, n, corners + 1, low=0.85, high=1.0)
    paths = torch.stack([radius * angle.cos(), radius * angle.sin()], -1)[:, None]
    cross = _uniform(generator, n) < 0.2
    arms = _uniform(generator, n, 2, 2, 2, low=-1.0, high=1.0)
    arms[:, 1] = torch.stack([arms[:, 0, :, 1], -arms[:, 0, :, 0]], -1)  # a second arm across the first
    crosses = torch.cat([arms, torch.full((n, 2, corners - 1, 2), math.nan)], 2)
    paths = torch.where(cross[:, None, None, None], crosses, torch.cat([paths, torch.full_like(paths, math.nan)], 1))
    return _render(paths, _pen(n, generator))


def _hatches(n: int, generator: torch.Generator) -> torch.Tensor:
    """Three or four parallel strokes crossed by as many: hash marks and grids."""
    count = 4
    offsets = torch.linspace(-1, 1, count)
    lines = torch.stack([torch.stack([offsets, torch.full_like(offsets, -1.0)], -1),
                         torch.stack([offsets, torch.full_like(offsets, 1.0)], -1)], 1)  # (count, 2 ends, x and y)
    paths = torch.cat([lines, lines.flip(-1)])[None].repeat(n, 1, 1, 1)  # vertical, then horizontal strokes
    slant = _uniform(generator, n, 1, 1, low=-0.4, high=0.4)
    paths[..., 0] = paths[..., 0] + slant * paths[..., 1]
    drop = _uniform(generator, n, 2 * count) < 0.2
    paths[drop] = math.nan
    return _render(paths + 0.05 * torch.randn(paths.shape, generator=generator), _pen(n, generator))
