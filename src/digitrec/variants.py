"""Ways of writing a digit that MNIST's writers seldom used, drawn onto its training digits.

MNIST's digits were written by American Census Bureau employees and high-school students. Much of
the world writes a 1 with a flag, a stroke from its top down to the left, and a model trained on
MNIST alone reads many such 1s as 7s, surely (BENCHMARKS.md, "European 1s"). A share of the training
1s, chosen by the run's seed, is given one: at the pen's width, from the top of the stroke,
``FLAG_LENGTH`` of the digit's height long and ``FLAG_ANGLE`` degrees below the horizontal, where a
7's bar is longer and nearly level. (Crossed 7s, the other European habit, are read right already.)
"""

from __future__ import annotations

import numpy as np

from digitrec.mnist_format import FIELD

FLAG_LENGTH = (0.15, 0.4)  # share of the digit's height
FLAG_ANGLE = (30.0, 65.0)  # degrees below the horizontal
INK = 128  # MNIST level that counts as the pen's stroke


def flag_ones(images: np.ndarray, labels: np.ndarray, share: float, seed: int) -> np.ndarray:
    """uint8 digits ``(N, 28, 28)``, white on black, in which ``share`` of the 1s, chosen by ``seed``, have a flag: a new
    array, or ``images`` itself where no 1 is chosen."""
    rng = np.random.default_rng(seed)
    ones = np.flatnonzero(labels == 1)
    chosen = rng.permutation(ones)[: round(share * len(ones))]
    if not len(chosen):
        return images
    flagged = images[chosen]
    ink = flagged >= INK
    rows = ink.any(axis=2)
    top, bottom = rows.argmax(axis=1), FIELD - 1 - rows[:, ::-1].argmax(axis=1)
    height = bottom - top + 1
    index = np.arange(len(chosen))
    head = ink[index, top] | ink[index, np.minimum(top + 1, FIELD - 1)]  # the stroke's top two rows
    x0, y0 = (head * np.arange(FIELD)).sum(axis=1) / np.maximum(head.sum(axis=1), 1), top + 0.5
    # the pen's width: the median run of ink across the middle half of the digit's rows
    line = np.arange(FIELD)
    middle = (line >= (top + height // 4)[:, None]) & (line <= (bottom - height // 4)[:, None])
    pen = np.clip(np.nanmedian(np.where(middle, ink.sum(axis=2), np.nan), axis=1), 1.5, 5.0)
    length = rng.uniform(*FLAG_LENGTH, len(chosen)) * height
    angle = np.radians(rng.uniform(*FLAG_ANGLE, len(chosen)))
    dx, dy = (-length * np.cos(angle))[:, None, None], (length * np.sin(angle))[:, None, None]
    y, x = np.mgrid[0:FIELD, 0:FIELD].astype(np.float64)
    x, y = x - x0[:, None, None], y - y0[:, None, None]
    along = np.clip((x * dx + y * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    distance = np.hypot(x - along * dx, y - along * dy)
    flag = np.clip(pen[:, None, None] / 2 + 0.5 - distance, 0.0, 1.0)  # anti-aliased over a pixel, as MNIST's rims
    out = images.copy()
    out[chosen] = np.maximum(flagged, np.round(flag * 255).astype(np.uint8))
    return out
