"""Pixels -> the ink: paper level, ink side, contrast and threshold, as components of which specks are dropped.

The image is shrunk to at most ``WORK_PIXELS`` pixels, transparency composited, and projected onto its main
colour axis (any ink colour); the paper's own level (shadows, uneven light) is estimated on a coarse grid and
subtracted, the side the ink lies on decided, contrast stretched (faint pencil) and the ink thresholded (Otsu)
into connected components. A small image (a scan or a crop of at most ``SCAN_SIDE`` px) has no shadows to
undo and its grey levels are the digit: it keeps its soft strokes whole.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import cv2
import numpy as np

from digitrec.images.decode import LUMA, WORK_PIXELS

SAMPLE = 1 << 15  # order statistics (medians, quantiles) of a big image are taken on at most about this many pixels
# Each tunable's measured reason, beside it: what the development sets read with it a quarter smaller and larger
# (benchmarks/tunables.py; BENCHMARKS.md, "The reading pipeline's tunables"). "unchanged": no reading changes, so
# these sets do not decide the value; the tests that describe its rule hold it.
BOX_FILL = 0.9  # an opaque part filling this much of its bounding box inside a transparent frame is a picture, not strokes
#   ±25 %: unchanged
BOX_CONTRAST = 0.25  # ... when this many levels (of 1) from its median colour
#   ±25 %: unchanged
BOX_INK = 0.01  # ... lie at least this fraction of its pixels
#   ±25 %: unchanged
FAR_FRACTION = 0.005  # the pixels farthest from the paper colour give the colour axis of the ink
#   ±25 %: unchanged
TAIL_TIE = 1.5  # ink's extreme within this factor of the other side's: a tie (see _ink_side)
#   ±25 %: 1.2 reads 2 more of MNIST's digits as images wrong; 1.875 unchanged
SCAN_SIDE = 64  # an image no bigger than this is a scan or a crop: flat paper, soft strokes (see ink_levels)
#   ±25 %: unchanged (the scans are 8-32 px, the photos 100 px and more)
SCAN_FAINT = 0.25  # ... whose strokes reach down to this fraction of Otsu's threshold
#   ±25 %: unchanged
MIN_CONTRAST = 0.04  # ink must differ from the paper by ~10 grey levels, or the page is blank
#   ±25 %: unchanged
MIN_SNR = 5.0  # ... and by this many times the paper's noise, or it is grain, not ink
#   ±25 %: 4 changes 1 reading; 6.25 loses a number of numbers-dev
MIN_PAPER = 32  # pixels of paper, away from the strokes, needed to measure its noise
#   ±25 %: unchanged
SPECK = 0.05  # components under this fraction of the largest one's area are dust or noise
#   ±25 %: 0.04 loses a number of numbers-dev; 0.0625 flags one non-digit more
DOT = 8  # ink spanning fewer of the image's own pixels than this ...
#   ±25 %: unchanged
DOT_FRACTION = 0.25  # ... and less than this fraction of its longer side is a dot or a speck on a blank page, no digit
#   ±25 %: unchanged
SQUARE = np.ones((3, 3), np.uint8)


def planes(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels (:func:`open_image`) -> colour in [0, 1] as planes (C, H, W), shrunk to WORK_PIXELS,
    transparency composited over a fitting backdrop.

    C is 1 for a grey image and 3 for a colour one: most digits come grey, and one plane is a third
    of the work. (Planes, not pixels of C values: NumPy is several times slower over a last axis of 3.)
    """
    channels = pixels.shape[2] if pixels.ndim == 3 else 1
    has_alpha, grey = channels in (2, 4), channels in (1, 2)
    k = math.ceil(math.sqrt(pixels.shape[0] * pixels.shape[1] / WORK_PIXELS))
    if k > 1:
        # an average over whole blocks of k x k pixels: anti-aliased, and OpenCV's fast path (a cut of under k px is lost)
        height, width = max(1, pixels.shape[0] // k), max(1, pixels.shape[1] // k)
        pixels = cv2.resize(pixels[: height * k, : width * k], (width, height), interpolation=cv2.INTER_AREA)
    planes = np.stack(cv2.split(pixels)) if pixels.ndim == 3 else pixels[None]
    if not grey and (planes[0] == planes[1]).all() and (planes[0] == planes[2]).all():
        planes = planes[[0, 3]] if has_alpha else planes[:1]  # grey stored as colour
    planes = planes.astype(np.float32) * np.float32(1 / 255)
    if not has_alpha:
        return planes
    colour, alpha = planes[:-1], planes[-1]
    if alpha.min() == 1.0:
        return colour
    backdrop = _backdrop(colour, alpha > 0.5)[:, None, None]
    return colour * alpha + backdrop * (1.0 - alpha)


def _backdrop(colour: np.ndarray, opaque: np.ndarray) -> np.ndarray:
    """The colour (one level per plane) for an image's transparent part.

    Strokes on a transparent canvas go over the backdrop they contrast with. An opaque picture with
    its own paper and ink inside a transparent frame (a dark box with light ink) gets its paper
    extended: the opaque part fills its bounding box and holds two levels.
    """
    if not opaque.any():
        return np.ones(len(colour), np.float32)
    rows, cols = np.flatnonzero(opaque.any(axis=1)), np.flatnonzero(opaque.any(axis=0))
    fill = opaque.sum() / ((rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1))
    shown = colour[:, opaque]
    paper = _order(shown, 0.5)
    if fill >= BOX_FILL and (np.abs(shown - paper[:, None]).max(axis=0) > BOX_CONTRAST).mean() >= BOX_INK:
        return paper.astype(np.float32)
    grey = LUMA @ shown if len(shown) == 3 else shown[0]
    return np.full(len(colour), 0.0 if grey.mean() > 0.5 else 1.0, np.float32)


def _order(values: np.ndarray, fraction: float) -> np.ndarray:
    """The value at ``fraction`` of the way up the sorted last axis (nearest rank; 0.5: the median).

    Several times faster than ``np.median`` or ``np.quantile``, whose interpolation between
    neighbours changes nothing at the pixel counts met here. One row is sorted: a partition stalls
    where many levels tie (a canvas's flat paper), a SIMD sort does not; rows of blocks are partitioned.
    """
    rank = min(values.shape[-1] - 1, int(fraction * values.shape[-1]))
    return (np.sort(values) if values.ndim == 1 else np.partition(values, rank, axis=-1))[..., rank]


def _sample(values: np.ndarray) -> np.ndarray:
    """An even grid of about ``SAMPLE`` of an image's pixels (all of a small one): its order statistics at a fraction of the cost."""
    step = max(1, int(np.ceil(np.sqrt(values.shape[-2] * values.shape[-1] / SAMPLE))))
    return values[..., ::step, ::step]


def toward_ink(planes: np.ndarray) -> tuple[np.ndarray, float]:
    """Each pixel's position on the colour axis between paper and ink, and the ink's contrast in grey levels (0-1).

    The border is mostly paper; the pixels farthest from its colour are ink or shading, and the
    principal direction of their offsets is the axis the image varies along: projecting onto it is
    grayscale for any ink colour (black, blue or red on white, chalk on a board). Which way round
    the ink lies is for ``_ink_side`` to say.
    """
    border = np.concatenate([planes[:, 0], planes[:, -1], planes[:, :, 0], planes[:, :, -1]], axis=1)
    paper = _order(border, 0.5)
    offset = _sample(planes) - paper[:, None, None]  # the axis is found on a sample, then every pixel projected onto it
    distance = np.square(offset).sum(axis=0).ravel()
    least = max(float(_order(distance, 1.0 - FAR_FRACTION)), np.nextafter(np.float32(0), np.float32(1)))  # never the paper itself
    far = offset.reshape(len(planes), -1)[:, np.flatnonzero(distance >= least)]  # (indices, not a mask: 4x faster here)
    if far.shape[1] == 0:
        return np.zeros(planes.shape[1:], dtype=np.float32), 0.0
    covariance = far @ far.T / far.shape[1]
    # one plane (most digits come grey) has one direction: eigh's fixed cost is a tenth of finding a small image's ink
    spread, directions = np.linalg.eigh(covariance) if len(planes) > 1 else (covariance[0], np.ones((1, 1), covariance.dtype))
    length = float(np.sqrt(max(spread[-1], 0.0)))
    if length < 1e-6:
        return np.zeros(planes.shape[1:], dtype=np.float32), 0.0
    axis = (directions[:, -1] / length).astype(np.float32)
    level = planes[0] * axis[0] if len(planes) == 1 else np.tensordot(axis, planes, axes=1)
    return level - np.float32(axis @ paper), length / np.sqrt(len(planes))


class _Paper(NamedTuple):
    """The median level of each block of a coarse grid over an image (a tenth of it a side): paper where ink covers under half."""

    medians: np.ndarray
    block: int

    @classmethod
    def of(cls, level: np.ndarray) -> _Paper:
        height, width = level.shape
        block = max(2, round(max(height, width) / 10))
        # an even sample of each block's pixels, the image's edge repeated where the last blocks run past it
        within = np.arange(0, block, -(-block // 8))  # at most 8 a side
        rows = np.minimum(np.arange(-(-height // block))[:, None] * block + within, height - 1)
        cols = np.minimum(np.arange(-(-width // block))[:, None] * block + within, width - 1)
        samples = level[rows.ravel()][:, cols.ravel()].reshape(len(rows), len(within), len(cols), len(within))
        return cls(_order(samples.transpose(0, 2, 1, 3).reshape(len(rows), len(cols), -1), 0.5), block)

    def flatten(self, level: np.ndarray, side: int, *neighbourhood: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """``side * level`` less the paper's own level under it (shading, uneven light): paper about 0, ink away from 0.

        The ``neighbourhood`` filters (3x3) run over each block and its 8 neighbours to replace
        blocks that a thick stroke fills: a median whichever way round the ink is, or an opening
        (min, then max) once ink is known to be positive, which keeps even thick strokes out.
        Bilinear interpolation between block centres, extrapolated linearly past the outer ones,
        follows shadows and gradients up to the image's edges and corners.
        """
        if self.medians.min() == self.medians.max():  # flat paper (a clean scan or crop): no level to interpolate
            return level * np.float32(side) - np.float32(self.medians.flat[0] * side)
        height, width = level.shape
        paper, block = (self.medians * side).astype(np.float32), self.block
        rows, cols = paper.shape
        for reduce in neighbourhood:
            paper = reduce(_extend(paper))[1:-1, 1:-1]
        paper = cv2.resize(_extend(paper), ((cols + 2) * block, (rows + 2) * block), interpolation=cv2.INTER_LINEAR)
        return level * np.float32(side) - paper[block : block + height, block : block + width]


def _extend(grid: np.ndarray) -> np.ndarray:
    """``grid`` with one more row and column all round, continuing the slope at each edge (NumPy's odd reflection)."""
    rows, cols = grid.shape
    out = np.empty((rows + 2, cols + 2), grid.dtype)
    out[1:-1, 1:-1] = grid
    inner = 2 if rows > 1 else 1  # a single row continues flat
    out[0, 1:-1] = 2 * out[1, 1:-1] - out[inner, 1:-1]
    out[-1, 1:-1] = 2 * out[-2, 1:-1] - out[-1 - inner, 1:-1]
    inner = 2 if cols > 1 else 1
    out[:, 0] = 2 * out[:, 1] - out[:, inner]
    out[:, -1] = 2 * out[:, -2] - out[:, -1 - inner]
    return out


def _median3(grid: np.ndarray) -> np.ndarray:
    return cv2.medianBlur(grid, 3)


def _min3(grid: np.ndarray) -> np.ndarray:
    return cv2.erode(grid, SQUARE)


def _max3(grid: np.ndarray) -> np.ndarray:
    return cv2.dilate(grid, SQUARE)


def _ink_side(level: np.ndarray, paper: _Paper) -> int:
    """+1 if ink lies above the paper on ``level``, -1 if below.

    Measured against the local paper level (a median: it needs no side), ink is the side with the
    farthest pixels: faint pencil beats a shadow, which only drifts. Where thick strokes fill whole
    blocks, the paper left between them lies as far off the other way; the extremes then nearly tie,
    and ink, a minority that is far off everywhere, is the side with more mass.
    """
    off = _sample(paper.flatten(level, 1, _median3)).ravel()
    count = min(off.size, max(10, off.size // 2000))
    ends = np.sort(off)  # (a partition at two ranks is slower, and slower still where many levels tie)
    high, low = float(ends[-count:].mean()), -float(ends[:count].mean())
    if max(high, low) < TAIL_TIE * min(high, low):
        high, low = float(np.maximum(off, 0.0).sum()), float(np.maximum(-off, 0.0).sum())
    return 1 if high >= low else -1


class Components(NamedTuple):
    """8-connected components of a mask: a label image (0 = none) and per label (index 0 unused) its area and box."""

    labels: np.ndarray
    area: np.ndarray
    top: np.ndarray
    left: np.ndarray
    bottom: np.ndarray  # exclusive
    right: np.ndarray  # exclusive


def label(mask: np.ndarray) -> Components:
    # 16-bit labels: enough for any mask of WORK_PIXELS (at most a quarter of its pixels are separate), and faster
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8, ltype=cv2.CV_16U)
    area = stats[:, cv2.CC_STAT_AREA].astype(np.int64)
    area[0] = 0  # OpenCV's label 0 is the background
    left, top = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
    return Components(labels, area, top, left, top + stats[:, cv2.CC_STAT_HEIGHT], left + stats[:, cv2.CC_STAT_WIDTH])


class Ink(NamedTuple):
    """An image's ink, found once and shared by the single-digit and the multi-digit readings."""

    map: np.ndarray  # ink level at working size, 0-1
    components: Components
    keep: np.ndarray  # per component label: ink, not a speck

    @property
    def found(self) -> bool:
        return bool(self.keep.any())

    @property
    def scan(self) -> bool:
        """Whether the image is a scan or a crop, read as MNIST's recipe reads it (:func:`a_scan`)."""
        return a_scan(self.map)


def ink_of(level: np.ndarray, mask: np.ndarray) -> Ink:
    """The ink of ``mask`` on the ink map ``level``: its components, specks dropped (after some was taken out, judged anew)."""
    components = label(mask)
    return Ink(level, components, _not_specks(components.area))


def a_scan(level: np.ndarray) -> bool:
    """Whether an image (at working size, which a scan is never shrunk from) is at most ``SCAN_SIDE`` px: a scan or a crop."""
    return max(level.shape) <= SCAN_SIDE


def ink_levels(level: np.ndarray, scan: bool) -> tuple[np.ndarray, np.ndarray]:
    """An image's level on its ink axis (:func:`toward_ink`) -> the same with ink the farther way, and each pixel's ink level.

    A scan or a crop (at most ``SCAN_SIDE`` px) is read as the MNIST recipe reads it: its paper is flat and
    the ink is the side of the border's level that lies farthest. A bigger image may hold shadows and uneven
    light: its paper's own level is estimated and subtracted, on the side the ink lies (:func:`_ink_side`).
    """
    farther = level if level.max() >= -level.min() else -level  # the border's level is 0: ink lies the farther way
    if scan:
        return farther, farther
    paper = _Paper.of(level)
    return farther, paper.flatten(level, _ink_side(level, paper), _min3, _max3)


def threshold(ink: np.ndarray, contrast: float, scan: bool) -> Ink | str:
    """The ink of an image's ink levels (:func:`ink_levels`), stretched to 0-1, in components, specks dropped;
    or, where nothing stands out of the paper by ``MIN_CONTRAST`` and ``MIN_SNR`` times its grain, why not:
    ``"blank"`` (nothing differs from the paper, or too faintly to be ink) or ``"busy"`` (strong differences
    all over, none standing out of the image's own texture as strokes would: a photo of a scene, a pattern).

    A scan's strokes keep their grey levels (soft, blurred or one pixel wide, they are the digit); a bigger
    image's are thresholded (Otsu) into full ink.
    """
    top = float(ink.max())
    if top <= 0:
        return "blank"
    levels = np.clip(ink * np.float32(256 / top), 0, 255).astype(np.uint8)  # 256 even bins over 0..top
    otsu, _ = cv2.threshold(levels, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    cut = (otsu + 1) * top / 256  # the lowest ink level above the boundary of Otsu's two classes
    mask = levels > otsu
    if mask.all():
        return "blank"
    peak = float(_order(ink[mask], 0.9))
    # the paper's grain, measured away from the strokes' anti-aliased rims; none where there is no such paper
    away = ~near(mask)
    paper_levels = _sample(ink)[_sample(away)]
    if not paper_levels.size:  # a sample of a page that is nearly all ink
        paper_levels = ink[away]
    # too little paper to tell grain from ink (a crop of a 1 a few pixels wide): no grain to beat
    noise = 1.4826 * float(_order(np.abs(paper_levels - _order(paper_levels, 0.5)), 0.5)) if paper_levels.size >= MIN_PAPER else 0.0
    if peak * contrast < MIN_CONTRAST:
        return "blank"
    if peak < MIN_SNR * noise:
        return "busy"
    if scan:
        # a stroke is the faint ink joined to a clear part (hysteresis): a blurred stroke stays whole
        components = label(ink > SCAN_FAINT * cut)
        clear = np.bincount(components.labels[mask], minlength=len(components.area))
        return Ink(np.clip(ink / peak, 0.0, 1.0), components, _not_specks(clear))
    # NIST's digits were scanned bilevel: ink well past the threshold is full ink, however
    # faint the pencil or light the pressure; a ramp around it keeps the strokes' soft edges.
    return ink_of(np.clip(ink / cut - 0.5, 0.0, 1.0), mask)


def blank(shape: tuple[int, ...]) -> Ink:
    """No ink at all on a page of ``shape``."""
    return Ink(np.zeros(shape, np.float32), label(np.zeros(shape, dtype=bool)), np.zeros(1, dtype=bool))


def _not_specks(area: np.ndarray) -> np.ndarray:
    """Per component label, whether its (ink) area is at least ``SPECK`` of the largest one's; label 0, no ink, never."""
    keep = area >= max(1, SPECK * area[1:].max(initial=0))
    keep[0] = False
    return keep


def near(mask: np.ndarray) -> np.ndarray:
    """``mask`` grown by one pixel, so the anti-aliased rim of a stroke stays with it."""
    return cv2.dilate(mask.view(np.uint8), SQUARE) > 0


def stroke_width(mask: np.ndarray) -> float:
    """Mean pen width in pixels: area over half the outline (a stroke of width w and length L has area wL, outline 2L).

    The outline is counted in pixel edges, whose staircase is 4/pi longer than the true outline on average over directions.
    """
    inside = np.count_nonzero(mask[1:] != mask[:-1]) + np.count_nonzero(mask[:, 1:] != mask[:, :-1])
    rim = np.count_nonzero(mask[[0, -1]]) + np.count_nonzero(mask[:, [0, -1]])  # the edges against the paper all round
    edges = inside + rim
    return 2.0 * np.count_nonzero(mask) / edges * 4.0 / np.pi if edges else 0.0


def a_dot(ink: Ink, scale: float) -> bool:
    """Whether all the ink kept is one dot (a speck of dust, a full stop) on an otherwise blank page.

    ``scale``: the image's own pixels per working pixel. The smallest digits met (8x8 scans, a digit
    on a wide canvas) span at least 6 px and a quarter of their image; the specks, 1-5 px and a twentieth.
    """
    kept = np.flatnonzero(ink.keep)
    c = ink.components
    span = max(c.bottom[kept].max() - c.top[kept].min(), c.right[kept].max() - c.left[kept].min())
    return span * scale < DOT and span < DOT_FRACTION * max(ink.map.shape)
