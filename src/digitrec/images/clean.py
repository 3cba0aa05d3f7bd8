"""The ink of a page less what is no digit's: the lines of squared or ruled paper, the box of a form, a ring drawn
around a digit, a line drawn under it, and in a row of writing, the rule lines through it."""

from __future__ import annotations

import itertools
import math

import cv2
import numpy as np

from digitrec.images.ink import Ink, ink_of, near, stroke_width

# Each tunable's measured reason, beside it: what the development sets read with it a quarter smaller and larger
# (benchmarks/tunables.py; BENCHMARKS.md, "The reading pipeline's tunables"). "unchanged": no reading changes, so
# these sets do not decide the value; the tests that describe its rule hold it.
FRAME_RUN = 0.5  # a component of ink at least this fraction of the image both ways, around the rest of the ink, is a box ...
#   ±25 %: unchanged
FRAME_SHARE = 0.95  # ... when this much of it lies in (or beside) straight runs at least FRAME_RUN of its width (height), or ...
#   ±25 %: unchanged
FRAME_BAND = 0.15  # ... when within this fraction of its size from each of its four edges ...
#   ±25 %: unchanged
FRAME_SPAN = 0.9  # ... such runs span this much of the edge ...
#   ±25 %: unchanged
FRAME_THIN = 0.06  # ... in a line no thicker than this fraction of the box (a digit's stroke: about STROKE)
#   ±25 %: unchanged
FRAME_TILT = 6.0  # the runs may be tilted by up to this many degrees (a photo of a form)
#   ±25 %: unchanged
GRID_SPAN = 0.8  # straight lines across (or down) this much of the image ...
#   ±25 %: 0.64 unchanged; 1.0 changes 1 reading
GRID_LINES = 3  # ... this many or more of them are the lines of squared or ruled paper
#   ±25 %: 2 unchanged; 4 changes 1 reading
RING_CONTENT = 0.4  # a thin ring around ink at least this fraction of its height is drawn around a digit ...
#   ±25 %: unchanged
RING_SOLID = 0.9  # ... when, filled, it covers this much of its convex hull
#   ±25 %: unchanged
RULE_ASPECT = 6  # a piece of ink this many times wider than high is a line (under the ink: an underline)
#   ±25 %: unchanged


def _without_frames(ink: Ink) -> Ink:
    """The ink without the box it was written in: the printed box of a form, a row of them, a table's grid, a ring.

    A box is one component of ink at least ``FRAME_RUN`` of the image's width and height, with any other
    ink inside it: either nearly all straight lines around other ink (``FRAME_SHARE`` of it: a box, a
    grid) or a ring around it (:func:`_ring`), or four straight, thin sides (:func:`_sides`) with a
    digit touching them, cut from them where it crosses them. Boxes are taken out until none is left;
    where only thin straight lines are left (an empty grid, a 0 drawn square), the ink is as found.
    """
    found = ink
    while True:
        c = found.components
        kept = np.flatnonzero(found.keep)
        height, width = c.labels.shape
        for frame in kept[((c.right - c.left)[kept] >= FRAME_RUN * width) & ((c.bottom - c.top)[kept] >= FRAME_RUN * height)]:
            rest = kept[kept != frame]
            box = slice(c.top[frame], c.bottom[frame]), slice(c.left[frame], c.right[frame])
            if len(rest) and not ((c.top[rest] > box[0].start).all() and (c.bottom[rest] < box[0].stop).all()
                                  and (c.left[rest] > box[1].start).all() and (c.right[rest] < box[1].stop).all()):
                continue
            piece = c.labels[box] == frame
            if found is ink and not len(rest) and not _edges(piece):
                continue  # a lone component (most digits) is a box only if ink runs along all four of its edges
            runs = _straight_runs(piece)
            straight = np.count_nonzero(piece & ~near(runs[0] | runs[1])) <= (1 - FRAME_SHARE) * np.count_nonzero(piece)
            if len(rest) and (straight or (width < 2 * height and _ring(piece, found.keep[c.labels[box]] & ~piece,
                                                                      c.bottom[rest].max() - c.top[rest].min()))):
                lines = piece  # a box, a grid or a ring around other ink
            elif (sides := _sides(piece, *runs)) is not None:
                lines = piece & near(sides)  # a box with a digit touching it
            elif straight and stroke_width(piece) <= FRAME_THIN * max(piece.shape):
                return ink  # thin straight lines and nothing else: no box to take out
            else:
                continue
            if not len(rest) and not (piece & ~lines).any():
                return ink
            mask = found.keep[c.labels]
            mask[box] &= ~lines
            found = ink_of(found.map, mask)
            break
        else:
            return found


def _without_underline(ink: Ink) -> Ink:
    """The ink without a line drawn under it, apart from it: a ruled line, an underline, the line of a form's field.

    Such a line is thin (``RULE_ASPECT`` times wider than high), lies below all the other ink and spans
    its width. A line the digit touches stays: a 2's flat base is one too.
    """
    c = ink.components
    kept = np.flatnonzero(ink.keep)
    for line in kept[(c.right - c.left)[kept] >= RULE_ASPECT * (c.bottom - c.top)[kept]]:
        rest = kept[kept != line]
        if (len(rest) and c.top[line] >= c.bottom[rest].max() and c.left[line] <= c.left[rest].min()
                and c.right[line] >= c.right[rest].max()):
            keep = ink.keep.copy()
            keep[line] = False
            return Ink(ink.map, c, keep)
    return ink


def _without_grid(ink: Ink) -> Ink:
    """The ink without the lines of squared or ruled paper: ``GRID_LINES`` or more straight lines across (or down) at
    least ``GRID_SPAN`` of the image, within ``FRAME_TILT`` degrees of level (upright). The lines are taken out but
    where a stroke crosses them."""
    c = ink.components
    height, width = c.labels.shape
    kept = np.flatnonzero(ink.keep)
    if not ((c.right - c.left)[kept] >= GRID_SPAN * width).any() and not ((c.bottom - c.top)[kept] >= GRID_SPAN * height).any():
        return ink  # no ink runs across the page
    mask = ink.keep[c.labels]
    # a cheap look next: a paper's lines run across both edges of the image, at GRID_LINES or more places each
    edge = max(1, round((1 - GRID_SPAN) / 2 * max(height, width)))
    if not any(min(_crossings(part[:, :edge]), _crossings(part[:, -edge:])) >= GRID_LINES for part in (mask, mask.T)):
        return ink
    pixels = mask.view(np.uint8) * np.uint8(255)
    segments = cv2.HoughLinesP(pixels, 1, np.pi / 180, round(GRID_SPAN * min(height, width) / 2),
                               minLineLength=round(GRID_SPAN * min(height, width)), maxLineGap=max(2, round(0.02 * max(height, width))))
    if segments is None:
        return ink
    lines = np.zeros_like(pixels)
    for across in (True, False):
        along = []  # (where it crosses the page, the segment) for each segment running this way
        for x0, y0, x1, y1 in segments.reshape(-1, 4):
            run, rise = (x1 - x0, y1 - y0) if across else (y1 - y0, x1 - x0)
            if abs(rise) <= abs(run) * math.tan(math.radians(FRAME_TILT)) and abs(run) >= GRID_SPAN * (width if across else height):
                along.append(((y0 + y1) / 2 if across else (x0 + x1) / 2, (x0, y0, x1, y1)))
        places = sorted(place for place, _ in along)
        distinct = 1 + sum(b - a > 3 for a, b in itertools.pairwise(places)) if places else 0
        if distinct >= GRID_LINES:
            for _, (x0, y0, x1, y1) in along:  # drawn from edge to edge: a paper's lines run across the page
                if across:
                    slope = (y1 - y0) / (x1 - x0)
                    ends = (0, round(y0 - slope * x0)), (width - 1, round(y0 + slope * (width - 1 - x0)))
                else:
                    slope = (x1 - x0) / (y1 - y0)
                    ends = (round(x0 - slope * y0), 0), (round(x0 + slope * (height - 1 - y0)), height - 1)
                cv2.line(lines, *ends, 255, 3)
    if not lines.any():
        return ink
    rest = mask & (lines == 0)
    # where a stroke crosses a line, the line's pixels beside the stroke stay: the stroke stays whole
    return ink_of(ink.map, rest | (mask & (cv2.dilate(rest.view(np.uint8), np.ones((9, 9), np.uint8)) > 0)))


def _crossings(strip: np.ndarray) -> int:
    """How many separate runs of rows the ink runs across (covers half of) in a strip along an image's edge."""
    across = (2 * np.count_nonzero(strip, axis=1) >= strip.shape[1]).view(np.int8)
    return int(np.count_nonzero(np.diff(across, prepend=0) == 1))


def _ring(piece: np.ndarray, ink: np.ndarray, height: int) -> bool:
    """Whether ``piece`` (cropped to its box) is a thin closed line (a circle, an oval) around all the ``ink`` in its box
    besides it, which stands ``height`` px high: at least ``RING_CONTENT`` of the ring's height (a 0's dot or mark is less).
    (:func:`_without_frames` does not ask it of a row of writing, where ruled lines and digits close loops around digits.)"""
    if height < RING_CONTENT * piece.shape[0] or stroke_width(piece) > FRAME_THIN * max(piece.shape):
        return False
    outside = np.pad(~piece, 1, constant_values=True).view(np.uint8)
    cv2.floodFill(outside, None, (0, 0), 2)  # the paper reached from the border; what stays 1 is inside the ring
    if not (outside[1:-1, 1:-1] == 1)[ink].all():
        return False
    # a ring is a convex outline: ruled lines closing a loop with some digits stick out of it
    filled = outside[1:-1, 1:-1] != 2
    hull = cv2.convexHull(cv2.findNonZero(filled.view(np.uint8)))
    return bool(np.count_nonzero(filled) >= RING_SOLID * cv2.contourArea(hull))


def _edge_bands(shape: tuple[int, ...]) -> list[tuple[tuple[slice, slice], int]]:
    """The four bands ``FRAME_BAND`` of a box's size wide along its edges, as (slices, the axis across the band)."""
    height, width = shape
    top, left = max(2, math.ceil(FRAME_BAND * height)), max(2, math.ceil(FRAME_BAND * width))
    return [((slice(None, top), slice(None)), 0), ((slice(-top, None), slice(None)), 0),
            ((slice(None), slice(None, left)), 1), ((slice(None), slice(-left, None)), 1)]


def _edges(mask: np.ndarray) -> bool:
    """Whether ink runs along ``FRAME_SPAN`` of each of the four edge bands of ``mask`` (cropped to its bounding box)."""
    return all(np.count_nonzero(mask[band].any(axis=axis)) >= FRAME_SPAN * mask.shape[1 - axis] for band, axis in _edge_bands(mask.shape))


def _straight_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pixels of ``mask`` in straight runs across, and down, at least ``FRAME_RUN`` of its width (height) long,
    tilted by up to ``FRAME_TILT`` degrees (a photo of a form is seldom square to the camera)."""
    pixels = mask.view(np.uint8)
    runs = []
    for length, down in ((mask.shape[1], False), (mask.shape[0], True)):
        run = max(2, round(FRAME_RUN * length))
        drift = math.ceil(run * math.tan(math.radians(FRAME_TILT)) / 2)  # a tilted line's runs, once thickened this much
        thick, along = ((1, 2 * drift + 1), (run, 1)) if down else ((2 * drift + 1, 1), (1, run))
        runs.append((cv2.morphologyEx(cv2.dilate(pixels, np.ones(thick, np.uint8)), cv2.MORPH_OPEN, np.ones(along, np.uint8)) > 0) & mask)
    return runs[0], runs[1]


def _sides(mask: np.ndarray, across: np.ndarray, down: np.ndarray) -> np.ndarray | None:
    """A box's four sides in ``mask`` (cropped to the box) from its straight runs, or None if it has not all four: in each
    edge band, runs spanning ``FRAME_SPAN`` of the edge, no thicker than ``FRAME_THIN`` of the box (a digit's stroke is
    an eighth of its size wide; a box's printed line much less)."""
    sides = np.zeros_like(mask)
    for band, axis in _edge_bands(mask.shape):
        side = (across if axis == 0 else down)[band]
        length, breadth = mask.shape[1 - axis], mask.shape[axis]
        if np.count_nonzero(side.any(axis=axis)) < FRAME_SPAN * length or np.count_nonzero(side) > FRAME_THIN * breadth * length:
            return None
        sides[band] = side
    return sides


def without_rules(ink: Ink) -> Ink:
    """A written number's ink without the long horizontal lines under or through it (ruled paper, underlines, the page's edge).

    Only in a row of writing (at least twice as wide as high): there, a run of ink longer than half
    the row is no digit's, and it would join every digit it touches into one.
    """
    height, width = ink.map.shape
    mask = ink.keep[ink.components.labels]
    if width < 2 * height or not mask.any():
        return ink
    rules = cv2.morphologyEx(mask.view(np.uint8), cv2.MORPH_OPEN, np.ones((1, width // 2), np.uint8)) > 0
    if not rules.any():
        return ink
    return ink_of(ink.map, mask & ~near(rules))


def cleaned(ink: Ink, scan: bool) -> Ink:
    """The ink without the lines of squared paper (none on a scan), the box or ring it was written in, and a line under it."""
    return _without_underline(_without_frames(ink if scan else _without_grid(ink)))
