"""A group of ink -> MNIST's 28x28 field, the way MNIST itself was made.

MNIST's digits are white on black, cropped to the ink, scaled so the longer side is 20 px (anti-aliased, aspect
kept) and placed in a 28x28 field with their centre of mass at the centre. Strokes thinner than MNIST's pen are
thickened first, so a fine pen on a big page looks like what the model was trained on.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
from PIL import Image

from digitrec.images.ink import Ink, near, stroke_width
from digitrec.mnist_format import BOX, FIELD

# Each tunable's measured reason, beside it: what the development sets read with it a quarter smaller and larger
# (benchmarks/tunables.py; BENCHMARKS.md, "The reading pipeline's tunables"). "unchanged": no reading changes, so
# these sets do not decide the value; the tests that describe its rule hold it.
INK_THRESHOLD = 0.25  # fraction of the full ink level that counts as ink when cropping
#   ±25 %: 1 and 4 readings change, MNIST's digits as images within one either way
STROKE = 0.125  # MNIST's median pen width over the digit's longer side (by stroke_width); thinner pens are thickened to it
#   ±25 %: 0.1: 2 real digits flagged, 1 wrong, a number of numbers-dev2 lost; 0.156: 1 more MNIST digit wrong
FINE = 4 * BOX  # a crop smaller than this is enlarged before thickening
#   ±25 %: 64 changes 10 readings; 100 flags a real digit and loses a number of numbers-dev2
SCAN_TURNS = (-8.0, 8.0)  # a scan's digit is also read turned by each of these angles (degrees; see views)


@functools.cache
def _octagon(radius: int) -> np.ndarray:
    """A near-disc of ``radius`` px: what alternating square and cross steps of one pixel grow a point into."""
    x = np.abs(np.arange(-radius, radius + 1))
    return ((np.maximum.outer(x, x) <= radius) & (np.add.outer(x, x) <= radius + (radius + 1) // 2)).astype(np.uint8)


def _grow(values: np.ndarray, radius: int) -> np.ndarray:
    """Grey dilation by a near-disc of ``radius`` px (:func:`_octagon`), padded by ``radius``."""
    return cv2.dilate(cv2.copyMakeBorder(values, radius, radius, radius, radius, cv2.BORDER_CONSTANT, value=0), _octagon(radius))


def _field(ink: np.ndarray, stroke: float) -> np.ndarray:
    """One digit's ink map (zero elsewhere) -> MNIST's 28x28: cropped, thickened, scaled to 20 px, centred by mass.

    ``stroke`` is the pen's width in pixels of ``ink``.
    """
    inked = ink >= INK_THRESHOLD
    rows, cols = np.flatnonzero(inked.any(axis=1)), np.flatnonzero(inked.any(axis=0))
    if len(rows) == 0:
        return np.zeros((FIELD, FIELD), dtype=np.uint8)
    ink = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    ink = thickened(ink, stroke, max(ink.shape))
    height, width = ink.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # reducing_gap: a box filter down to 3x the size first, then Lanczos: 3x faster, and every development set reads the same
    shrunk = Image.fromarray(ink, mode="F").resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    boxed = np.clip(np.frombuffer(shrunk.tobytes(), np.float32).reshape(size[1], size[0]), 0.0, 1.0)  # (np.asarray: 3x slower)
    boxed /= max(float(boxed.max()), 1e-6)  # MNIST's strokes reach full white whatever their width
    field = np.zeros((FIELD, FIELD), dtype=np.float32)
    total = boxed.sum()
    centre_y = boxed.sum(axis=1) @ np.arange(boxed.shape[0]) / total if total else boxed.shape[0] / 2
    centre_x = boxed.sum(axis=0) @ np.arange(boxed.shape[1]) / total if total else boxed.shape[1] / 2
    top = min(max(round(FIELD / 2 - centre_y), 0), FIELD - boxed.shape[0])
    left = min(max(round(FIELD / 2 - centre_x), 0), FIELD - boxed.shape[1])
    field[top : top + boxed.shape[0], left : left + boxed.shape[1]] = boxed
    return np.round(field * 255).astype(np.uint8)


def thickened(ink: np.ndarray, stroke: float, size: int) -> np.ndarray:
    """Ink whose pen is ``stroke`` px wide with the pen thickened to MNIST's: ``STROKE`` of ``size``, the digit's size in px.

    A pen thinner than that is thickened on a grid where the size is FINE px: fine enough that a step
    of the dilation is a fraction of a pixel once scaled to MNIST's, coarse enough that it stays cheap.
    (A thin stroke shrunk onto it loses intensity, which the scaling's normalisation gives back.)
    """
    if size != FINE and stroke <= STROKE * size - 1:
        factor = FINE / size
        height, width = ink.shape
        shape = (max(1, round(width * factor)), max(1, round(height * factor)))
        ink = cv2.resize(ink, shape, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
        stroke, size = stroke * factor, FINE
    radius = round((STROKE * size - stroke) / 2)
    return _grow(ink, radius) if radius > 0 else ink


def digit(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The digit of ``mask`` on the ink map ``ink`` (the rest of the image no part of it) in MNIST's 28x28."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows):  # the digit's box and the one-pixel rim near adds: the rest of the image is no part of it
        box = slice(max(rows[0] - 1, 0), rows[-1] + 2), slice(max(cols[0] - 1, 0), cols[-1] + 2)
        ink, mask = ink[box], mask[box]
    return _field(ink * near(mask), stroke_width(mask))


def whole(ink: Ink) -> np.ndarray:
    """All the ink kept, as one digit in MNIST's 28x28 (uint8); all zeros where none is kept."""
    c, kept = ink.components, np.flatnonzero(ink.keep)
    if not len(kept):
        return np.zeros((FIELD, FIELD), dtype=np.uint8)
    # the kept components' box and a pixel more all round (what digit keeps): no other pixel is looked at
    box = (slice(max(int(c.top[kept].min()) - 1, 0), int(c.bottom[kept].max()) + 1),
           slice(max(int(c.left[kept].min()) - 1, 0), int(c.right[kept].max()) + 1))
    return digit(ink.map[box], ink.keep[c.labels[box]])


def views(digit: np.ndarray) -> np.ndarray:
    """A 28x28 digit turned by each of ``SCAN_TURNS`` about the field's centre: ``(len(SCAN_TURNS), 28, 28)`` uint8.

    A digit scanned at 8 to 32 px is uncertain in its slant by a pixel of its own, which its crop,
    unlike its size and place, does not settle; read as it is and turned a little either way, it
    reads better (BENCHMARKS.md, "Scans read in three views").
    """
    centre = ((FIELD - 1) / 2, (FIELD - 1) / 2)
    return np.stack([cv2.warpAffine(digit, cv2.getRotationMatrix2D(centre, turn, 1.0), (FIELD, FIELD), flags=cv2.INTER_LINEAR)
                     for turn in SCAN_TURNS])
