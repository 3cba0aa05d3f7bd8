"""Rows of 1 to ``MOST_DIGITS`` MNIST digits, as :func:`digitrec.images.fit_row` gives a written number to the row reader.

The digits of a row are apart, touching or overlapping, each scaled, stretched, slanted, thickened
or thinned, on one baseline with some jitter; some rows are blurred, speckled, or cut by the thin
gap a ruled line leaves when it is taken out.
"""

from __future__ import annotations

import itertools

import cv2
import numpy as np

from digitrec.images import ROW_HEIGHT, ROW_INK, fit_row

MOST_DIGITS = 6


def _crop(ink: np.ndarray) -> np.ndarray:
    rows, cols = np.flatnonzero(ink.max(axis=1) > ROW_INK), np.flatnonzero(ink.max(axis=0) > ROW_INK)
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] if len(rows) else np.zeros((1, 1), np.float32)


def _slanted(digit: np.ndarray, shear: float) -> np.ndarray:
    height, width = digit.shape
    pad = int(abs(shear) * height) + 1
    matrix = np.float32([[1, shear, pad - shear * height / 2], [0, 1, 0]])
    return _crop(cv2.warpAffine(digit, matrix, (width + 2 * pad + int(abs(shear) * height), height)))


def _styled(rng: np.random.Generator, digit: np.ndarray) -> np.ndarray:
    """One MNIST digit (uint8 28x28) -> its ink (0-1), cropped: thickened or thinned, slanted, scaled and stretched."""
    ink = _crop(digit.astype(np.float32) / 255)
    pen = rng.random()
    if pen < 0.2:
        ink = cv2.dilate(ink, np.ones((2, 2), np.uint8))
    elif pen < 0.3 and min(ink.shape) > 6:
        ink = cv2.erode(ink, np.ones((2, 2), np.uint8))
    if rng.random() < 0.5:
        ink = _slanted(ink, rng.uniform(-0.35, 0.35))
    scale, stretch = rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.2)
    size = (max(1, round(ink.shape[1] * scale * stretch)), max(1, round(ink.shape[0] * scale)))
    return cv2.resize(ink, size, interpolation=cv2.INTER_LINEAR)


def _gap(rng: np.random.Generator, left: np.ndarray, right: np.ndarray) -> int:
    """Pixels between two neighbours: apart (45 %), touching (30 %) or overlapping by up to 40 % of the narrower (25 %)."""
    kind = rng.random()
    if kind < 0.45:
        return int(rng.integers(1, 30))
    if kind < 0.75:
        return int(rng.integers(-3, 1))
    return -int(rng.integers(3, max(4, int(0.4 * min(left.shape[1], right.shape[1])))))


def row(rng: np.random.Generator, digits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, str]:
    """A row of 1 to ``MOST_DIGITS`` of these uint8 ``(N, 28, 28)`` digits, ``ROW_HEIGHT`` px high, and its text."""
    picks = rng.integers(0, len(digits), int(rng.integers(1, MOST_DIGITS + 1)))
    pieces = [_styled(rng, digits[i]) for i in picks]
    gaps = [_gap(rng, a, b) for a, b in itertools.pairwise(pieces)]
    tallest = max(p.shape[0] for p in pieces)
    shifts = [int(rng.integers(-3, 4)) for _ in pieces]
    top = 4 + max(0, -min(shifts))
    canvas = np.zeros((top + tallest + 4 + max(0, max(shifts)), 48 + sum(p.shape[1] for p in pieces) + max(0, sum(gaps))), np.float32)
    x = 4
    for piece, shift, gap in zip(pieces, shifts, [*gaps, 0], strict=True):
        bottom = top + tallest + shift
        region = canvas[bottom - piece.shape[0] : bottom, x : x + piece.shape[1]]
        np.maximum(region, piece[: region.shape[0], : region.shape[1]], out=region)
        x = max(0, x + piece.shape[1] + gap)
    if rng.random() < 0.15:  # a ruled line taken out through the digits leaves a thin gap
        y = int(rng.integers(top + tallest // 3, top + tallest + 1))
        canvas[y : y + int(rng.integers(1, 3))] = 0
    if rng.random() < 0.2:
        canvas = cv2.GaussianBlur(canvas, (3, 3), rng.uniform(0.5, 1.0))
    if rng.random() < 0.2:  # specks the ink finder kept
        for _ in range(int(rng.integers(1, 6))):
            y, x = int(rng.integers(0, canvas.shape[0] - 1)), int(rng.integers(0, canvas.shape[1] - 1))
            canvas[y : y + 2, x : x + 2] = rng.uniform(0.3, 1)
    return fit_row(canvas), "".join(str(labels[i]) for i in picks)


def stacked(rows: list[np.ndarray]) -> np.ndarray:
    """Rows of different widths as one float32 batch ``(N, 1, ROW_HEIGHT, W)``, each padded on the right to the widest."""
    batch = np.zeros((len(rows), 1, ROW_HEIGHT, max(r.shape[1] for r in rows)), np.float32)
    for i, one in enumerate(rows):
        batch[i, 0, :, : one.shape[1]] = one
    return batch
