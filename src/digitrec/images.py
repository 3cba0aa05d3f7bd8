"""Any image of a digit -> MNIST's format, the way MNIST itself was made.

MNIST's digits are white on black, cropped to the ink, scaled so the longer side is 20 px
(anti-aliased, aspect kept) and placed in a 28x28 field with their centre of mass at the centre.
A model trained on MNIST only works on a person's image once it has been brought into that form.

People's images are not NIST scans, so first the ink is found: the image is decoded upright,
transparency composited, shrunk to at most ``WORK_PIXELS`` pixels and projected onto its main colour
axis (any ink colour); the paper's own level (shadows, uneven light) is estimated on a coarse grid
and subtracted, the side the ink lies on decided, contrast stretched (faint pencil) and the ink
thresholded (Otsu) into connected components, of which specks, the lines of squared or ruled paper,
the printed box a digit may be written in, a ring drawn around it and a line drawn under it are
dropped. Strokes thinner than MNIST's pen are thickened, so a fine pen on a big page looks like
what the model was trained on.
A small image (a scan or a crop of at most ``SCAN_SIDE`` px) has no shadows to undo and its grey
levels are the digit: it is read as MNIST's own recipe reads it, keeping its soft strokes whole.
"""

from __future__ import annotations

import functools
import io
import itertools
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, NamedTuple

import cv2
import numpy as np
import pyspng
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError

from digitrec.errors import DigitrecError

BOX = 20  # MNIST's digits fit a 20x20 box inside the 28x28 field
FIELD = 28
INK_THRESHOLD = 0.25  # fraction of the full ink level that counts as ink when cropping
WORK_PIXELS = 160 * 160  # heavy filtering runs on at most about this many pixels: a digit holds no more detail, a wide
# number keeps its height (every development set reads as well as at 192 or 224 px a side, at 128 px two real images fewer)
MAX_PIXELS = 150_000_000  # larger images are refused before decoding (decompression bombs); 108 MP phone photos pass
FAR_FRACTION = 0.005  # the pixels farthest from the paper colour give the colour axis of the ink
TAIL_TIE = 1.5  # ink's extreme within this factor of the other side's: a tie (see _ink_side)
MIN_CONTRAST = 0.04  # ink must differ from the paper by ~10 grey levels, or the page is blank
MIN_SNR = 5.0  # ... and by this many times the paper's noise, or it is grain, not ink
MIN_PAPER = 32  # pixels of paper, away from the strokes, needed to measure its noise
SPECK = 0.05  # components under this fraction of the largest one's area are dust or noise
STROKE = 0.125  # MNIST's median pen width over the digit's longer side (by _stroke_width); thinner pens are thickened to it
FINE = 4 * BOX  # a crop smaller than this is enlarged before thickening
SPLIT_ASPECT = 1.5  # ink wider than this times its height holds touching digits (true of 0.5% of MNIST's single digits)
DIGIT_ASPECT = 0.8  # MNIST's median width / height, to guess how many digits touch
MERGE_OVERLAP = 0.5  # pieces of ink sharing this fraction of the narrower one's width in x are one digit
FRAME_RUN = 0.5  # a component of ink at least this fraction of the image both ways, around the rest of the ink, is a box ...
FRAME_SHARE = 0.95  # ... when this much of it lies in (or beside) straight runs at least FRAME_RUN of its width (height), or ...
FRAME_BAND = 0.15  # ... when within this fraction of its size from each of its four edges ...
FRAME_SPAN = 0.9  # ... such runs span this much of the edge ...
FRAME_THIN = 0.06  # ... in a line no thicker than this fraction of the box (a digit's stroke: about STROKE)
FRAME_TILT = 6.0  # the runs may be tilted by up to this many degrees (a photo of a form)
GRID_SPAN = 0.8  # straight lines across (or down) this much of the image ...
GRID_LINES = 3  # ... this many or more of them are the lines of squared or ruled paper
RING_CONTENT = 0.4  # a thin ring around ink at least this fraction of its height is drawn around a digit ...
RING_SOLID = 0.9  # ... when, filled, it covers this much of its convex hull
SCAN_SIDE = 64  # an image no bigger than this is a scan or a crop: flat paper, soft strokes (see find_ink)
SCAN_FAINT = 0.25  # ... whose strokes reach down to this fraction of Otsu's threshold
SCAN_TURNS = (-8.0, 8.0)  # ... whose digit is also read turned by each of these angles (degrees)
NARROWEST = 0.4  # a digit is at least this fraction of its height wide (MNIST's 1s: median 0.35 with the pen)
MOST_TOUCHING = 4  # a group of ink is read as at most this many touching digits
RULE_ASPECT = 6  # a piece of ink this many times wider than high ...
RULE_LENGTH = 1.5  # ... and this many times longer than the tallest piece is high is a line, not part of a digit
ROW_HEIGHT = 28  # the row reader's input is this many px high, its ink BOX px high and centred ...
ROW_MARGIN = 2  # ... with this many px of paper left and right, and a width a multiple of ROW_STEP
ROW_STEP = 4
ROW_INK = 0.1  # ink level that counts as ink when cropping a row (what the row reader was trained with)
MIN_DIGIT = 0.25  # groups smaller both ways than this fraction of the tallest (dots, commas) are no digits
DOT = 8  # ink spanning fewer of the image's own pixels than this ...
DOT_FRACTION = 0.25  # ... and less than this fraction of its longer side is a dot or a speck on a blank page, no digit
SAMPLE = 1 << 15  # order statistics (medians, quantiles) of a big image are taken on at most about this many pixels
BOX_FILL = 0.9  # an opaque part filling this much of its bounding box inside a transparent frame is a picture, not strokes
BOX_CONTRAST = 0.25  # ... when this many levels (of 1) from its median colour
BOX_INK = 0.01  # ... lie at least this fraction of its pixels
ORIENTATION = 0x0112  # the EXIF tag
_WORK_SIDE = math.isqrt(WORK_PIXELS)  # a JPEG decodes at a reduced scale down to this side: never fewer pixels than WORK_PIXELS
HIGH_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def open_image(path: str | Path | BinaryIO, *, max_side: int | None = None) -> np.ndarray:
    """Decode an image file or stream (first frame of an animation), upright as its EXIF says, into
    uint8 pixels: ``(H, W)`` grey, or ``(H, W, C)`` with C = 2 (grey, alpha), 3 (RGB) or 4 (RGBA).

    ``max_side`` lets a JPEG decode at a reduced scale (never below ``max_side`` px) when only that
    much detail is needed, several times faster for phone photos. Pillow reads every header; an
    8-bit PNG is inflated by libspng straight into NumPy (a 1507x810 RGBA canvas: 9 ms against
    Pillow's 20 ms with the copy out of it).
    """
    source = str(path) if isinstance(path, str | Path) else getattr(path, "name", "<stream>")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_PIXELS below is the limit
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise DigitrecError(f"image is {width}x{height} pixels, more than the {MAX_PIXELS:,} accepted", source)
                if _plain_png(image):
                    return _spng(image)
                image.seek(0)
                if max_side:
                    image.draft(image.mode, (max_side, max_side))
                image.load()
                return _array(upright(image))
    except DigitrecError:
        raise
    except FileNotFoundError:
        raise DigitrecError("no such file", source) from None
    except UnidentifiedImageError:
        raise DigitrecError("not a readable image (not an image, or a format Pillow cannot decode)", source) from None
    except Image.DecompressionBombError:
        raise DigitrecError(f"image refused: more pixels than the {MAX_PIXELS:,} accepted", source) from None
    except Exception as e:
        # Pillow's decoders (and libspng) report damaged data with many exception types (OSError,
        # SyntaxError, struct.error, IndexError, EOFError, RuntimeError...); to the user each means the same thing.
        raise DigitrecError(f"not a readable image (damaged or truncated: {e.__class__.__name__}: {e})", source) from None


def _plain_png(image: Image.Image) -> bool:
    """A PNG that libspng decodes as Pillow would: grey, RGB or RGBA (libspng has no grey with alpha out), no palette,
    no transparent colour, no EXIF, one frame."""
    return (image.format == "PNG" and image.mode in ("L", "RGB", "RGBA") and not image.info.keys() & {"transparency", "exif"}
            and getattr(image, "n_frames", 1) == 1)


def _spng(image: Image.Image) -> np.ndarray:
    image.fp.seek(0)  # the file Pillow opened for the header, read whole: it is not opened twice
    blob = image.fp.read()
    # Pillow brings 16 bits down to 8 and turns the image upright when its EXIF follows the pixels
    if blob[24] != 8 or b"eXIf" in blob:
        image.load()
        return _array(upright(image))
    return pyspng.load(blob)


def upright(image: Image.Image) -> Image.Image:
    """``image`` turned as its EXIF orientation says (a phone photo is often stored sideways); itself, uncopied, if it is upright."""
    return image if image.getexif().get(ORIENTATION, 1) == 1 else ImageOps.exif_transpose(image)


def as_pixels(array: np.ndarray) -> np.ndarray:
    """The pixel rule for arrays, everywhere digitrec takes one (``predict``, the estimator, the HTTP API): uint8 levels 0-255.

    Booleans are ink (True = 255). Numbers must be finite and at least 0. When no value exceeds 1
    the array holds fractions of full intensity (a model's ``x / 255``, a binary 0/1 mask) and is
    scaled by 255; otherwise it holds levels 0-255, and a value over 255 is refused. Levels are
    rounded, so ``images / 255`` reads exactly as ``images``.
    """
    array = np.asarray(array)
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind not in "uif":
        raise DigitrecError(f"pixels must be numbers, not {array.dtype}", "pixels")
    values = array.astype(np.float64)
    if not values.size:
        return values.astype(np.uint8)
    if not np.isfinite(values).all():
        raise DigitrecError("pixels hold NaN or infinite values", "pixels")
    low, high = float(values.min()), float(values.max())
    if low < 0 or high > 255:
        raise DigitrecError(f"pixel values run from {low:g} to {high:g}; expected levels 0-255 or fractions 0-1", "pixels")
    return np.rint(values * 255 if high <= 1 else values).astype(np.uint8)


DIGIT_SHAPES = ("(28, 28), (784,), (N, 28, 28), (N, 784), (N, 1, 28, 28), (28, 28, 1), (N, 28, 28, 1), "
                "and RGB (28, 28, 3), (N, 28, 28, 3) or (N, 3, 28, 28)")
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, as Pillow converts RGB to grey


def digit_batch(array: np.ndarray) -> np.ndarray | None:
    """Digits already in MNIST's format (white on black, 28x28), as uint8 ``(N, 28, 28)``; None if not shaped like them.

    The shapes PyTorch and Keras users hold are accepted (:data:`DIGIT_SHAPES`): flat rows,
    single-channel images channel-first or channel-last, and RGB, converted to grey. A
    ``(3, 28, 28)`` array is three digits, not one colour image.
    """
    array = np.asarray(array)
    shape = array.shape
    if shape in ((784,), (28, 28), (28, 28, 1), (28, 28, 3)):
        array = array.reshape(1, *shape) if shape != (784,) else array.reshape(1, 28, 28)
    elif array.ndim == 2 and shape[1] == 784:
        array = array.reshape(-1, 28, 28)
    if array.ndim == 4 and array.shape[1:] in ((1, 28, 28), (3, 28, 28)):
        array = np.moveaxis(array, 1, -1)
    if array.ndim == 4 and array.shape[1:3] == (28, 28) and array.shape[3] in (1, 3):
        pixels = as_pixels(array)
        return pixels[..., 0] if pixels.shape[3] == 1 else np.rint(pixels @ LUMA).astype(np.uint8)
    if array.ndim == 3 and array.shape[1:] == (28, 28):
        return as_pixels(array)
    return None


def _decoded(image: str | Path | Image.Image | np.ndarray | bytes) -> np.ndarray:
    """Any image as uint8 pixels, shaped as :func:`open_image` gives them."""
    if isinstance(image, str | Path):
        return open_image(image, max_side=_WORK_SIDE)
    if isinstance(image, bytes | bytearray | memoryview):
        return open_image(io.BytesIO(image), max_side=_WORK_SIDE)
    if isinstance(image, np.ndarray):
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[..., 0]
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))) or 0 in image.shape:
            raise DigitrecError(f"an array shaped {image.shape} is neither digits in MNIST's format ({DIGIT_SHAPES}) "
                                "nor one image (H, W), (H, W, 3) or (H, W, 4)", "array")
        return as_pixels(image)
    if isinstance(image, Image.Image):
        return _array(upright(image))  # an upload opened by the caller may still be sideways
    raise DigitrecError(f"cannot read a {type(image).__name__} as an image: give a file path, encoded image bytes, "
                        "a PIL image, a NumPy array or a tensor", "input")


def _array(image: Image.Image) -> np.ndarray:
    """A decoded Pillow image as uint8 pixels in the fewest planes that hold it: grey or colour, with alpha if it has any."""
    if image.mode in HIGH_DEPTH_MODES:
        # Pillow clips 16-bit and float pixels to 0-255 when converting; stretch their range instead
        values = np.asarray(image, dtype=np.float64)
        span = float(values.max() - values.min()) or 1.0
        image = Image.fromarray(np.round((values - values.min()) / span * 255).astype(np.uint8))
    has_alpha = image.mode in ("P", "PA", "LA", "RGBA", "RGBa") or "transparency" in image.info
    grey = image.mode in ("1", "L", "LA", "La")
    mode = ("LA" if has_alpha else "L") if grey else ("RGBA" if has_alpha else "RGB")
    if image.mode != mode:
        image = image.convert(mode)
    # through tobytes: np.asarray(image) is slower (a freshly decoded 1507x810 RGBA canvas: 5.3 ms against 4.3)
    shape = (image.height, image.width) + ((len(mode),) if len(mode) > 1 else ())
    return np.frombuffer(image.tobytes(), np.uint8).reshape(shape)


def _pixels(pixels: np.ndarray) -> np.ndarray:
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


def _toward_ink(planes: np.ndarray) -> tuple[np.ndarray, float]:
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
    # one plane (most digits come grey) has one direction: eigh's fixed cost is a tenth of find_ink's on a small image
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


_SQUARE = np.ones((3, 3), np.uint8)


def _median3(grid: np.ndarray) -> np.ndarray:
    return cv2.medianBlur(grid, 3)


def _min3(grid: np.ndarray) -> np.ndarray:
    return cv2.erode(grid, _SQUARE)


def _max3(grid: np.ndarray) -> np.ndarray:
    return cv2.dilate(grid, _SQUARE)


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


class _Components(NamedTuple):
    """8-connected components of a mask: a label image (0 = none) and per label (index 0 unused) its area and box."""

    labels: np.ndarray
    area: np.ndarray
    top: np.ndarray
    left: np.ndarray
    bottom: np.ndarray  # exclusive
    right: np.ndarray  # exclusive


def _label(mask: np.ndarray) -> _Components:
    # 16-bit labels: enough for any mask of WORK_PIXELS (at most a quarter of its pixels are separate), and faster
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8, ltype=cv2.CV_16U)
    area = stats[:, cv2.CC_STAT_AREA].astype(np.int64)
    area[0] = 0  # OpenCV's label 0 is the background
    left, top = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
    return _Components(labels, area, top, left, top + stats[:, cv2.CC_STAT_HEIGHT], left + stats[:, cv2.CC_STAT_WIDTH])


@functools.cache
def _octagon(radius: int) -> np.ndarray:
    """A near-disc of ``radius`` px: what alternating square and cross steps of one pixel grow a point into."""
    x = np.abs(np.arange(-radius, radius + 1))
    return ((np.maximum.outer(x, x) <= radius) & (np.add.outer(x, x) <= radius + (radius + 1) // 2)).astype(np.uint8)


def _grow(values: np.ndarray, radius: int) -> np.ndarray:
    """Grey dilation by a near-disc of ``radius`` px (:func:`_octagon`), padded by ``radius``."""
    return cv2.dilate(cv2.copyMakeBorder(values, radius, radius, radius, radius, cv2.BORDER_CONSTANT, value=0), _octagon(radius))


class Ink(NamedTuple):
    """An image's ink, found once and shared by the single-digit and the multi-digit readings."""

    map: np.ndarray  # ink level at working size, 0-1
    components: _Components
    keep: np.ndarray  # per component label: ink, not a speck

    @property
    def found(self) -> bool:
        return bool(self.keep.any())

    @property
    def scan(self) -> bool:
        """Whether the image is a scan or a crop, read as MNIST's recipe reads it (:func:`_a_scan`)."""
        return _a_scan(self.map)


def _ink_of(level: np.ndarray, mask: np.ndarray) -> Ink:
    """The ink of ``mask`` on the ink map ``level``: its components, specks dropped (after some was taken out, judged anew)."""
    components = _label(mask)
    return Ink(level, components, _not_specks(components.area))


def _a_scan(level: np.ndarray) -> bool:
    """Whether an image (at working size, which a scan is never shrunk from) is at most ``SCAN_SIDE`` px: a scan or a crop."""
    return max(level.shape) <= SCAN_SIDE


def find_ink(image: str | Path | Image.Image | np.ndarray | Ink, trace: list[tuple[str, np.ndarray]] | None = None) -> Ink:
    """The ink map at working size, stretched to 0-1, its components, and which of them are ink, not specks.

    A scan or a crop (at most ``SCAN_SIDE`` px) is read as the MNIST recipe reads it: its paper is flat, the ink is
    the side of the border's level that lies farthest, and the grey levels of its strokes are kept (soft, blurred or
    one pixel wide, they are the digit). A bigger image may hold shadows and uneven light: its paper level is
    estimated and subtracted, and its strokes are thresholded into full ink. The lines of squared paper
    (:func:`_without_grid`), the box of a form a digit is written in or a ring around it (:func:`_without_frames`)
    and a line under it (:func:`_without_underline`) are no ink of it, and a page whose only ink is a dot
    (:func:`_a_dot`) holds no ink.

    ``trace``, when given, receives each step as a named image in [0, 1] (:func:`strip` shows them).
    """
    if isinstance(image, Ink):
        return image
    pixels = _decoded(image)
    planes = _pixels(pixels)
    level, contrast = _toward_ink(planes)
    scan = _a_scan(level)
    farther = level if level.max() >= -level.min() else -level  # the border's level is 0: ink lies the farther way
    if scan:
        ink = farther
    else:
        paper = _Paper.of(level)
        side = _ink_side(level, paper)
        ink = paper.flatten(level, side, _min3, _max3)
    if trace is not None:
        trace += [("image", np.moveaxis(planes, 0, -1)), ("ink axis", farther), ("ink" if scan else "paper removed", ink)]
    top = float(ink.max())
    if top > 0:
        levels = np.clip(ink * np.float32(256 / top), 0, 255).astype(np.uint8)  # 256 even bins over 0..top
        otsu, _ = cv2.threshold(levels, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
        threshold = (otsu + 1) * top / 256  # the lowest ink level above the boundary of Otsu's two classes
        mask = levels > otsu
        if not mask.all():
            peak = float(_order(ink[mask], 0.9))
            # the paper's grain, measured away from the strokes' anti-aliased rims; none where there is no such paper
            away = ~_near(mask)
            paper_levels = _sample(ink)[_sample(away)]
            if not paper_levels.size:  # a sample of a page that is nearly all ink
                paper_levels = ink[away]
            # too little paper to tell grain from ink (a crop of a 1 a few pixels wide): no grain to beat
            noise = 1.4826 * float(_order(np.abs(paper_levels - _order(paper_levels, 0.5)), 0.5)) if paper_levels.size >= MIN_PAPER else 0.0
            if peak * contrast >= MIN_CONTRAST and peak >= MIN_SNR * noise:
                if scan:
                    # a stroke is the faint ink joined to a clear part (hysteresis): a blurred stroke stays whole
                    components = _label(ink > SCAN_FAINT * threshold)
                    clear = np.bincount(components.labels[mask], minlength=len(components.area))
                    found = Ink(np.clip(ink / peak, 0.0, 1.0), components, _not_specks(clear))
                else:
                    # NIST's digits were scanned bilevel: ink well past the threshold is full ink, however
                    # faint the pencil or light the pressure; a ramp around it keeps the strokes' soft edges.
                    found = _ink_of(np.clip(ink / threshold - 0.5, 0.0, 1.0), mask)
                found = _without_underline(_without_frames(found if scan else _without_grid(found)))
                if trace is not None:
                    trace.append(("ink kept (grey: dropped)", np.where(found.keep[found.components.labels], 1.0,
                                                                           np.where(found.components.labels > 0, 0.35, 0.0))))
                if found.found and not _a_dot(found, pixels.shape[0] / ink.shape[0]):  # (squared paper alone: no ink)
                    return found
    return Ink(np.zeros_like(ink), _label(np.zeros(ink.shape, dtype=bool)), np.zeros(1, dtype=bool))


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
            straight = np.count_nonzero(piece & ~_near(runs[0] | runs[1])) <= (1 - FRAME_SHARE) * np.count_nonzero(piece)
            if len(rest) and (straight or (width < 2 * height and _ring(piece, found.keep[c.labels[box]] & ~piece,
                                                                      c.bottom[rest].max() - c.top[rest].min()))):
                lines = piece  # a box, a grid or a ring around other ink
            elif (sides := _sides(piece, *runs)) is not None:
                lines = piece & _near(sides)  # a box with a digit touching it
            elif straight and _stroke_width(piece) <= FRAME_THIN * max(piece.shape):
                return ink  # thin straight lines and nothing else: no box to take out
            else:
                continue
            if not len(rest) and not (piece & ~lines).any():
                return ink
            mask = found.keep[c.labels]
            mask[box] &= ~lines
            found = _ink_of(found.map, mask)
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
    return _ink_of(ink.map, rest | (mask & (cv2.dilate(rest.view(np.uint8), np.ones((9, 9), np.uint8)) > 0)))


def _crossings(strip: np.ndarray) -> int:
    """How many separate runs of rows the ink runs across (covers half of) in a strip along an image's edge."""
    across = (2 * np.count_nonzero(strip, axis=1) >= strip.shape[1]).view(np.int8)
    return int(np.count_nonzero(np.diff(across, prepend=0) == 1))


def _ring(piece: np.ndarray, ink: np.ndarray, height: int) -> bool:
    """Whether ``piece`` (cropped to its box) is a thin closed line (a circle, an oval) around all the ``ink`` in its box
    besides it, which stands ``height`` px high: at least ``RING_CONTENT`` of the ring's height (a 0's dot or mark is less).
    (:func:`_without_frames` does not ask it of a row of writing, where ruled lines and digits close loops around digits.)"""
    if height < RING_CONTENT * piece.shape[0] or _stroke_width(piece) > FRAME_THIN * max(piece.shape):
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


def _a_dot(ink: Ink, scale: float) -> bool:
    """Whether all the ink kept is one dot (a speck of dust, a full stop) on an otherwise blank page.

    ``scale``: the image's own pixels per working pixel. The smallest digits met (8x8 scans, a digit
    on a wide canvas) span at least 6 px and a quarter of their image; the specks, 1-5 px and a twentieth.
    """
    kept = np.flatnonzero(ink.keep)
    c = ink.components
    span = max(c.bottom[kept].max() - c.top[kept].min(), c.right[kept].max() - c.left[kept].min())
    return span * scale < DOT and span < DOT_FRACTION * max(ink.map.shape)


def _not_specks(area: np.ndarray) -> np.ndarray:
    """Per component label, whether its (ink) area is at least ``SPECK`` of the largest one's; label 0, no ink, never."""
    keep = area >= max(1, SPECK * area[1:].max(initial=0))
    keep[0] = False
    return keep


def _near(mask: np.ndarray) -> np.ndarray:
    """``mask`` grown by one pixel, so the anti-aliased rim of a stroke stays with it."""
    return cv2.dilate(mask.view(np.uint8), _SQUARE) > 0


def _field(ink: np.ndarray, stroke: float) -> np.ndarray:
    """One digit's ink map (zero elsewhere) -> MNIST's 28x28: cropped, thickened, scaled to 20 px, centred by mass.

    ``stroke`` is the pen's width in pixels of ``ink``.
    """
    inked = ink >= INK_THRESHOLD
    rows, cols = np.flatnonzero(inked.any(axis=1)), np.flatnonzero(inked.any(axis=0))
    if len(rows) == 0:
        return np.zeros((FIELD, FIELD), dtype=np.uint8)
    ink = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    ink = _thickened(ink, stroke, max(ink.shape))
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


def _thickened(ink: np.ndarray, stroke: float, size: int) -> np.ndarray:
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


def _stroke_width(mask: np.ndarray) -> float:
    """Mean pen width in pixels: area over half the outline (a stroke of width w and length L has area wL, outline 2L).

    The outline is counted in pixel edges, whose staircase is 4/pi longer than the true outline on average over directions.
    """
    inside = np.count_nonzero(mask[1:] != mask[:-1]) + np.count_nonzero(mask[:, 1:] != mask[:, :-1])
    rim = np.count_nonzero(mask[[0, -1]]) + np.count_nonzero(mask[:, [0, -1]])  # the edges against the paper all round
    edges = inside + rim
    return 2.0 * np.count_nonzero(mask) / edges * 4.0 / np.pi if edges else 0.0


def _digit(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows):  # the digit's box and the one-pixel rim _near adds: the rest of the image is no part of it
        box = slice(max(rows[0] - 1, 0), rows[-1] + 2), slice(max(cols[0] - 1, 0), cols[-1] + 2)
        ink, mask = ink[box], mask[box]
    return _field(ink * _near(mask), _stroke_width(mask))


def views(digit: np.ndarray) -> np.ndarray:
    """A 28x28 digit turned by each of ``SCAN_TURNS`` about the field's centre: ``(len(SCAN_TURNS), 28, 28)`` uint8.

    A digit scanned at 8 to 32 px is uncertain in its slant by a pixel of its own, which its crop,
    unlike its size and place, does not settle; read as it is and turned a little either way, it
    reads better (BENCHMARKS.md, "Scans read in three views").
    """
    centre = ((FIELD - 1) / 2, (FIELD - 1) / 2)
    return np.stack([cv2.warpAffine(digit, cv2.getRotationMatrix2D(centre, turn, 1.0), (FIELD, FIELD), flags=cv2.INTER_LINEAR)
                     for turn in SCAN_TURNS])


def to_mnist(image: str | Path | Image.Image | np.ndarray | Ink) -> np.ndarray:
    """A 28x28 uint8 array in MNIST's format; all zeros if the image holds no ink."""
    ink = find_ink(image)
    c, kept = ink.components, np.flatnonzero(ink.keep)
    if not len(kept):
        return np.zeros((FIELD, FIELD), dtype=np.uint8)
    # the kept components' box and a pixel more all round (what _digit keeps): no other pixel is looked at
    box = (slice(max(int(c.top[kept].min()) - 1, 0), int(c.bottom[kept].max()) + 1),
           slice(max(int(c.left[kept].min()) - 1, 0), int(c.right[kept].max()) + 1))
    return _digit(ink.map[box], ink.keep[c.labels[box]])


def _groups(ink: Ink) -> list[tuple[int, int, int, int, list[int]]]:
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
    return [group for group in sorted(groups) if max(group[3] - group[2], group[1] - group[0]) >= MIN_DIGIT * tallest]


def count_digits(image: str | Path | Image.Image | np.ndarray | Ink) -> int:
    """How many separate digits the image's ink holds (touching digits count as one): 1 for a digit, 0 for a blank."""
    return len(_groups(find_ink(image)))


def strip(steps: list[tuple[str, np.ndarray]], height: int = 112) -> Image.Image:
    """Named images (a ``find_ink`` trace, then what the model saw) side by side and captioned: why an image reads as it does.

    Maps are shown in their own range, ink white; 28x28 digits as they are, enlarged.
    """
    tiles = []
    for caption, step in steps:
        step = np.asarray(step)
        step = step.astype(np.float32) / (255.0 if step.dtype == np.uint8 else 1.0)
        low, high = float(step.min()), float(step.max())
        if caption != "image" and high > 0:
            step = np.clip(step / high, 0.0, 1.0)  # a map's own range: ink white, paper black
        elif high > 1 or low < 0:
            step = (step - low) / max(high - low, 1e-6)
        picture = Image.fromarray(np.round(step.squeeze() * 255).astype(np.uint8))
        width = max(1, round(picture.width * height / picture.height))
        small = max(picture.size) <= FIELD
        tiles.append((caption, picture.resize((width, height), Image.Resampling.NEAREST if small else Image.Resampling.BOX)))
    strip = Image.new("RGB", (sum(t.width for _, t in tiles) + 8 * (len(tiles) + 1), height + 28), "white")
    draw, left = ImageDraw.Draw(strip), 8
    for caption, tile in tiles:
        strip.paste(tile.convert("RGB"), (left, 8))
        draw.text((left, height + 12), caption, fill="black")
        left += tile.width + 8
    return strip


def segment_digits(image: str | Path | Image.Image | np.ndarray | Ink, split_touching: bool = True) -> list[np.ndarray]:
    """An image of a written number -> one 28x28 MNIST-format array per digit, left to right.

    Components that overlap much in x are one digit (a 5 whose bar is detached, a 4 in two strokes);
    with ``split_touching``, a group much wider than tall holds touching digits and is cut at the
    columns with least ink (which also cuts the 0.5 % of single digits that are that wide). A model
    chooses better among :func:`digit_options` (``predict --multi`` does).
    """
    ink = find_ink(image)
    digits = []
    for left, right, top, bottom, members in _groups(ink):
        width, height = right - left, bottom - top
        mask = np.isin(ink.components.labels, members)
        wide = split_touching and width > SPLIT_ASPECT * height and not _dash(mask, height)
        count = min(max(2, round(width / (DIGIT_ASPECT * height))), width // 2) if wide else 1
        digits += _pieces(ink.map, mask, left, right, count)
    return digits


def digit_options(image: str | Path | Image.Image | np.ndarray | Ink) -> list[list[list[np.ndarray]]]:
    """Each group of ink, left to right, as the ways it may be read: as one digit, as two touching digits, and so on.

    A group is offered as ``k`` digits when each would still be at least ``NARROWEST`` of its height
    wide (a 1 is about that narrow), up to ``MOST_TOUCHING``; a dash or an underline only as itself.
    Each option is a list of 28x28 digits, cut at the columns with least ink.
    """
    ink = _without_rules(find_ink(image))
    options = []
    for left, right, top, bottom, members in _groups(ink):
        width, height = right - left, bottom - top
        mask = np.isin(ink.components.labels, members)
        most = 1 if _dash(mask, height) else max(1, min(MOST_TOUCHING, int(width / (NARROWEST * height)), width // 2))
        options.append([_pieces(ink.map, mask, left, right, count) for count in range(1, most + 1)])
    return options


def row_map(image: str | Path | Image.Image | np.ndarray | Ink) -> np.ndarray | None:
    """An image of a written number -> the row reader's input (:func:`fit_row`); None when it holds no digits.

    The row is the ink of its digits (:func:`_groups`, ruled lines taken out), the pen thickened to
    MNIST's for digits as high as the row, as :func:`to_mnist` thickens a digit's.
    """
    ink = _without_rules(find_ink(image))
    groups = _groups(ink)
    if not groups:
        return None
    mask = np.isin(ink.components.labels, [label for *_, members in groups for label in members])
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    box = slice(max(rows[0] - 1, 0), rows[-1] + 2), slice(max(cols[0] - 1, 0), cols[-1] + 2)
    row = ink.map[box] * _near(mask[box])
    return fit_row(_thickened(row, _stroke_width(mask[box]), int(rows[-1] - rows[0] + 1)))


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


def _without_rules(ink: Ink) -> Ink:
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
    return _ink_of(ink.map, mask & ~cv2.dilate(rules.view(np.uint8), _SQUARE).astype(bool))


def _dash(mask: np.ndarray, height: int) -> bool:
    """A group of ink (``mask``, ``height`` px high) hardly taller than its pen's width is a dash or an underline, not digits."""
    return height < 3 * _stroke_width(mask)


def _pieces(ink: np.ndarray, mask: np.ndarray, left: int, right: int, count: int) -> list[np.ndarray]:
    """One group of ink (``mask``, within columns ``left`` to ``right``) cut into ``count`` digits, each in MNIST's format.

    The cuts fall at the columns with least ink; ``ink`` is the image's ink map.
    """
    digits = []
    for start, stop in _cuts(mask[:, left:right], count):
        piece = np.zeros_like(mask)
        piece[:, left + start : left + stop] = mask[:, left + start : left + stop]
        if piece.any():
            digits.append(_digit(ink, piece))
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
