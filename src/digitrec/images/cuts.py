"""A page's ink -> its digits: groups of ink left to right, the ways each may be cut into touching digits, and the
row whole as the row reader reads it."""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from digitrec.images.clean import RULE_ASPECT
from digitrec.images.field import digit, thickened
from digitrec.images.ink import Ink, near, stroke_width
from digitrec.mnist_format import BOX, FIELD

# Each tunable's measured reason, beside it: what the development sets read with it a quarter smaller and larger
# (benchmarks/tunables.py; BENCHMARKS.md, "The reading pipeline's tunables"). "unchanged": no reading changes, so
# these sets do not decide the value; the tests that describe its rule hold it.
MERGE_OVERLAP = 0.5  # pieces of ink sharing this fraction of the narrower one's width in x are one digit
#   ±25 %: 0.4 flags one non-digit fewer; 0.625 one MNIST digit more
MIN_DIGIT = 0.25  # groups smaller both ways than this fraction of the tallest (dots, commas) are no digits
#   ±25 %: 0.2 unchanged; 0.3125 loses a number
RULE_LENGTH = 1.5  # a line (RULE_ASPECT) this many times longer than the tallest piece is high is part of no digit
#   ±25 %: unchanged
NARROWEST = 0.4  # a digit is at least this fraction of its height wide (MNIST's 1s: median 0.35 with the pen)
#   ±25 %: 0.32 loses a number in each numbers set; 0.5 reads one more of numbers-dev2
MOST_TOUCHING = 4  # a group of ink is read as at most this many touching digits
#   ±25 %: unchanged
ROW_HEIGHT = FIELD  # the row reader's input is as high as MNIST's field, its ink BOX px high and centred ...
ROW_MARGIN = 2  # ... with this many px of paper left and right, and a width a multiple of ROW_STEP
ROW_STEP = 4
ROW_INK = 0.1  # ink level that counts as ink when cropping a row (what the row reader was trained with)


class Group(NamedTuple):
    """One digit's ink, or touching digits': a box (right and bottom exclusive) and the components it joins."""

    left: int
    right: int
    top: int
    bottom: int
    members: list[int]


def groups(ink: Ink) -> list[Group]:
    """The ink's digits left to right, as (left, right, top, bottom, component labels): components overlapping much in x are one.

    Groups smaller both ways than ``MIN_DIGIT`` of the tallest (dots, commas) are left out, and so
    are lines much longer than the tallest piece of ink is high.
    """
    components = ink.components
    labels = np.flatnonzero(ink.keep)
    height, width = (components.bottom - components.top)[labels], (components.right - components.left)[labels]
    # a long thin line (a ruled line, an underline, the page's edge) is nobody's digit: it would join them all
    labels = labels[(width < RULE_ASPECT * height) | (width < RULE_LENGTH * height.max(initial=0))]
    groups: list[tuple[int, int, int, int, list[int]]] = []
    for label in sorted(labels.tolist(), key=lambda i: int(components.left[i])):
        box = (int(components.left[label]), int(components.right[label]), int(components.top[label]), int(components.bottom[label]))
        for index, (left, right, top, bottom, members) in enumerate(groups):
            overlap = min(right, box[1]) - max(left, box[0])
            if overlap > MERGE_OVERLAP * min(right - left, box[1] - box[0]):
                groups[index] = (min(left, box[0]), max(right, box[1]), min(top, box[2]), max(bottom, box[3]), [*members, label])
                break
        else:
            groups.append((*box, [label]))
    tallest = max((bottom - top for _, _, top, bottom, _ in groups), default=0)
    return [Group(*group) for group in sorted(groups) if max(group[3] - group[2], group[1] - group[0]) >= MIN_DIGIT * tallest]


def options(ink: Ink, found: list[Group]) -> list[list[list[np.ndarray]]]:
    """Each of the ink's groups (:func:`groups`), left to right, as the ways it may be read: as one digit, as two
    touching digits, and so on.

    A group is offered as ``k`` digits when each would still be at least ``NARROWEST`` of its height
    wide (a 1 is about that narrow), up to ``MOST_TOUCHING``; a dash or an underline only as itself.
    Each option is a list of 28x28 digits, cut at the columns with least ink.
    """
    options = []
    height_px, width_px = ink.map.shape
    for left, right, top, bottom, members in found:
        # the group's box and a pixel more all round, which is all that a digit of it looks at (its rim, its pen's width)
        window = slice(max(top - 1, 0), min(bottom + 1, height_px)), slice(max(left - 1, 0), min(right + 1, width_px))
        mask = np.isin(ink.components.labels[window], members)
        width, height, start = right - left, bottom - top, left - window[1].start
        most = 1 if _dash(mask, height) else max(1, min(MOST_TOUCHING, int(width / (NARROWEST * height)), width // 2))
        options.append([_pieces(ink.map[window], mask, start, start + width, count) for count in range(1, most + 1)])
    return options


def row(ink: Ink, found: list[Group]) -> np.ndarray | None:
    """A written number's ink and its groups (:func:`groups`) -> the row reader's input (:func:`fit_row`); None when
    there is no group.

    The row is the ink of its groups, the pen thickened to MNIST's for digits as high as the row, as
    :func:`digitrec.images.field.digit` thickens a digit's.
    """
    if not found:
        return None
    mask = np.isin(ink.components.labels, [label for *_, members in found for label in members])
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    box = slice(max(rows[0] - 1, 0), rows[-1] + 2), slice(max(cols[0] - 1, 0), cols[-1] + 2)
    row = ink.map[box] * near(mask[box])
    return fit_row(thickened(row, stroke_width(mask[box]), int(rows[-1] - rows[0] + 1)))


def fit_row(ink: np.ndarray) -> np.ndarray:
    """A row of ink (levels 0-1, any size; ink bright) -> float32 ``ROW_HEIGHT`` px high: cropped, its ink ``BOX`` px high.

    The width keeps the row's aspect, with ``ROW_MARGIN`` px of paper each side, and is rounded up to
    a multiple of ``ROW_STEP`` (the row reader reads one column in two).
    """
    rows, cols = np.flatnonzero((ink > ROW_INK).any(axis=1)), np.flatnonzero((ink > ROW_INK).any(axis=0))
    if not len(rows):
        return np.zeros((ROW_HEIGHT, ROW_HEIGHT), np.float32)
    ink = np.asarray(ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], dtype=np.float32)
    scale = BOX / ink.shape[0]
    width = max(1, round(ink.shape[1] * scale))
    fitted = cv2.resize(ink, (width, BOX), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    padded = max(ROW_HEIGHT, width + 2 * ROW_MARGIN)
    out = np.zeros((ROW_HEIGHT, padded + (-padded) % ROW_STEP), np.float32)
    top = (ROW_HEIGHT - BOX) // 2
    out[top : top + BOX, ROW_MARGIN : ROW_MARGIN + width] = np.clip(fitted, 0.0, 1.0)
    return out


def _dash(mask: np.ndarray, height: int) -> bool:
    """A group of ink (``mask``, ``height`` px high) hardly taller than its pen's width is a dash or an underline, not digits."""
    return height < 3 * stroke_width(mask)


def _pieces(ink: np.ndarray, mask: np.ndarray, left: int, right: int, count: int) -> list[np.ndarray]:
    """One group of ink (``mask``, within columns ``left`` to ``right``) cut into ``count`` digits, each in MNIST's format.

    The cuts fall at the columns with least ink; ``ink`` is the ink map under ``mask``.
    """
    digits = []
    for start, stop in _cuts(mask[:, left:right], count):
        piece = np.zeros_like(mask)
        piece[:, left + start : left + stop] = mask[:, left + start : left + stop]
        if piece.any():
            digits.append(digit(ink, piece))
    return digits


def _cuts(mask: np.ndarray, count: int) -> list[tuple[int, int]]:
    """Column ranges of ``count`` touching digits in one group of ink: each cut where least ink lies near an even division."""
    width = mask.shape[1]
    reach = max(1, width // (4 * count))
    profile = mask.sum(axis=0)
    bounds = [0]
    for k in range(1, count):
        start = max(bounds[-1] + 1, k * width // count - reach)
        window = profile[start : k * width // count + reach + 1]
        if len(window):
            bounds.append(start + int(np.argmin(window)))
    return [(a, b) for a, b in zip(bounds, [*bounds[1:], width], strict=True) if b > a]
