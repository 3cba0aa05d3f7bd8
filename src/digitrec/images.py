"""Any image of a digit -> MNIST's format, the way MNIST itself was made.

MNIST's digits are white on black, cropped to the ink, scaled so the longer side is 20 px
(anti-aliased, aspect kept) and placed in a 28x28 field with their centre of mass at the centre.
A model trained on MNIST only works on a person's image once it has been brought into that form.

People's images are not NIST scans, so first the ink is found: the image is decoded upright,
transparency composited, shrunk to at most ``WORK_SIDE`` px and projected onto its main colour
axis (any ink colour); the paper's own level (shadows, uneven light) is estimated on a coarse grid
and subtracted, the side the ink lies on decided, contrast stretched (faint pencil) and the ink
thresholded (Otsu) into connected components, of which specks are dropped. Strokes thinner than
MNIST's pen are thickened, so a fine pen on a big page looks like what the model was trained on.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from digitrec.errors import DigitrecError

BOX = 20  # MNIST's digits fit a 20x20 box inside the 28x28 field
FIELD = 28
INK_THRESHOLD = 0.25  # fraction of the full ink level that counts as ink when cropping
WORK_SIDE = 512  # heavy filtering runs at this size at most: a digit holds no more detail, and it keeps a 12 MP photo fast
MAX_PIXELS = 150_000_000  # larger images are refused before decoding (decompression bombs); 108 MP phone photos pass
FAR_FRACTION = 0.005  # the pixels farthest from the paper colour give the colour axis of the ink
TAIL_TIE = 1.5  # ink's extreme within this factor of the other side's: a tie (see _ink_side)
MIN_CONTRAST = 0.04  # ink must differ from the paper by ~10 grey levels, or the page is blank
MIN_SNR = 5.0  # ... and by this many times the paper's noise, or it is grain, not ink
SPECK = 0.05  # components under this fraction of the largest one's area are dust or noise
STROKE = 0.125  # MNIST's median pen width over the digit's longer side (by _stroke_width); thinner pens are thickened to it
FINE = 4 * BOX  # a crop smaller than this is enlarged before thickening
SPLIT_ASPECT = 1.5  # ink wider than this times its height holds touching digits (true of 0.5% of MNIST's single digits)
DIGIT_ASPECT = 0.8  # MNIST's median width / height, to guess how many digits touch
MERGE_OVERLAP = 0.5  # pieces of ink sharing this fraction of the narrower one's width in x are one digit
MIN_DIGIT = 0.25  # groups smaller both ways than this fraction of the tallest (dots, commas) are no digits
HIGH_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def open_image(path: str | Path | BinaryIO, *, max_side: int | None = None) -> Image.Image:
    """Decode an image file or stream (first frame of an animation), upright as its EXIF says.

    ``max_side`` lets a JPEG decode at a reduced scale (never below ``max_side`` px) when only that
    much detail is needed, several times faster for phone photos.
    """
    source = str(path) if isinstance(path, str | Path) else getattr(path, "name", "<stream>")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_PIXELS below is the limit
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise DigitrecError(f"image is {width}x{height} pixels, more than the {MAX_PIXELS:,} accepted", source)
                image.seek(0)
                if max_side:
                    image.draft(image.mode, (max_side, max_side))
                image.load()
                return ImageOps.exif_transpose(image)
    except DigitrecError:
        raise
    except FileNotFoundError:
        raise DigitrecError("no such file", source) from None
    except UnidentifiedImageError:
        raise DigitrecError("not a readable image (not an image, or a format Pillow cannot decode)", source) from None
    except Image.DecompressionBombError:
        raise DigitrecError(f"image refused: more pixels than the {MAX_PIXELS:,} accepted", source) from None
    except Exception as e:
        # Pillow's decoders report damaged data with many exception types (OSError, SyntaxError,
        # struct.error, IndexError, EOFError...); to the user each means the same thing.
        raise DigitrecError(f"not a readable image (damaged or truncated: {e.__class__.__name__}: {e})", source) from None


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


def _as_image(image: str | Path | Image.Image | np.ndarray | bytes) -> Image.Image:
    if isinstance(image, str | Path):
        return open_image(image, max_side=WORK_SIDE)
    if isinstance(image, bytes | bytearray | memoryview):
        return open_image(io.BytesIO(image), max_side=WORK_SIDE)
    if isinstance(image, np.ndarray):
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[..., 0]
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))) or 0 in image.shape:
            raise DigitrecError(f"an array shaped {image.shape} is neither digits in MNIST's format ({DIGIT_SHAPES}) "
                                "nor one image (H, W), (H, W, 3) or (H, W, 4)", "array")
        return Image.fromarray(as_pixels(image))
    if isinstance(image, Image.Image):
        return ImageOps.exif_transpose(image)  # an upload opened by the caller may still be sideways
    raise DigitrecError(f"cannot read a {type(image).__name__} as an image: give a file path, encoded image bytes, "
                        "a PIL image, a NumPy array or a tensor", "input")


def _pixels(image: Image.Image) -> np.ndarray:
    """Colour in [0, 1] as (H, W, 3), shrunk to WORK_SIDE, transparency composited over a contrasting backdrop."""
    if image.mode in HIGH_DEPTH_MODES:
        # Pillow clips 16-bit and float pixels to 0-255 when converting; stretch their range instead
        values = np.asarray(image, dtype=np.float64)
        span = float(values.max() - values.min()) or 1.0
        image = Image.fromarray(np.round((values - values.min()) / span * 255).astype(np.uint8))
    has_alpha = image.mode in ("P", "PA", "LA", "RGBA", "RGBa") or "transparency" in image.info
    image = image.convert("RGBA" if has_alpha else "RGB")
    if max(image.size) > WORK_SIDE:
        scale = WORK_SIDE / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BOX, reducing_gap=3.0)  # area average: anti-aliased and fast
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    if not has_alpha:
        return pixels
    colour, alpha = pixels[..., :3], pixels[..., 3:]
    if alpha.min() == 1.0:
        return colour
    # A canvas with a transparent background: its strokes go over the backdrop they contrast with.
    opaque = alpha[..., 0] > 0.5
    ink_is_light = opaque.any() and (colour[opaque] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).mean() > 0.5
    backdrop = 0.0 if ink_is_light else 1.0
    return colour * alpha + backdrop * (1.0 - alpha)


def _toward_ink(pixels: np.ndarray) -> tuple[np.ndarray, float]:
    """Each pixel's position on the colour axis between paper and ink, and the ink's contrast in grey levels (0-1).

    The border is mostly paper; the pixels farthest from its colour are ink or shading, and the
    principal direction of their offsets is the axis the image varies along: projecting onto it is
    grayscale for any ink colour (black, blue or red on white, chalk on a board). Which way round
    the ink lies is for ``_ink_side`` to say.
    """
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    offset = pixels - np.median(border, axis=0)
    distance = np.einsum("hwc,hwc->hw", offset, offset)
    far = offset[(distance >= np.quantile(distance, 1.0 - FAR_FRACTION)) & (distance > 0)]
    if len(far) == 0:
        return np.zeros(pixels.shape[:2], dtype=np.float32), 0.0
    spread, directions = np.linalg.eigh(far.T @ far / len(far))
    length = float(np.sqrt(max(spread[-1], 0.0)))
    if length < 1e-6:
        return np.zeros(pixels.shape[:2], dtype=np.float32), 0.0
    return (offset @ directions[:, -1] / length).astype(np.float32), length / np.sqrt(pixels.shape[-1])


def _flatten(level: np.ndarray, *neighbourhood: Callable[..., np.ndarray]) -> np.ndarray:
    """``level`` less the paper's own level under it (shading, uneven light): paper about 0, ink away from 0.

    The paper level is estimated on a coarse grid: each block (a tenth of the image) gives its median,
    paper where ink covers less than half of it. The ``neighbourhood`` filters then run over each
    block and its 8 neighbours to replace blocks that a thick stroke fills: a median whichever way
    round the ink is, or an opening (min, then max) once ink is known to be positive, which keeps
    even thick strokes out. Bilinear interpolation between block centres, extrapolated linearly past
    the outer ones, follows shadows and gradients up to the image's edges and corners.
    """
    height, width = level.shape
    block = max(2, round(max(height, width) / 10))
    rows, cols = -(-height // block), -(-width // block)
    padded = np.pad(level, ((0, rows * block - height), (0, cols * block - width)), mode="edge")
    paper = np.median(padded.reshape(rows, block, cols, block).transpose(0, 2, 1, 3).reshape(rows, cols, -1), axis=-1)
    for reduce in neighbourhood:
        around = np.pad(paper, 1, mode="reflect", reflect_type="odd")
        paper = reduce([around[i : i + rows, j : j + cols] for i in range(3) for j in range(3)], axis=0)
    paper = np.pad(paper, 1, mode="reflect", reflect_type="odd")
    size = ((cols + 2) * block, (rows + 2) * block)
    paper = np.asarray(Image.fromarray(paper.astype(np.float32), mode="F").resize(size, Image.Resampling.BILINEAR))
    return level - paper[block : block + height, block : block + width]


def _ink_side(level: np.ndarray) -> int:
    """+1 if ink lies above the paper on ``level``, -1 if below.

    Measured against the local paper level (a median: it needs no side), ink is the side with the
    farthest pixels: faint pencil beats a shadow, which only drifts. Where thick strokes fill whole
    blocks, the paper left between them lies as far off the other way; the extremes then nearly tie,
    and ink, a minority that is far off everywhere, is the side with more mass.
    """
    off = _flatten(level, np.median).ravel()
    count = min(off.size, max(10, off.size // 2000))
    high = float(np.partition(off, off.size - count)[-count:].mean())
    low = -float(np.partition(off, count - 1)[:count].mean())
    if max(high, low) < TAIL_TIE * min(high, low):
        high, low = float(np.maximum(off, 0.0).sum()), float(np.maximum(-off, 0.0).sum())
    return 1 if high >= low else -1


def _otsu(values: np.ndarray) -> float:
    """The threshold that best separates values in [0, 1] into two classes (Otsu 1979)."""
    counts, edges = np.histogram(values, bins=256, range=(0.0, 1.0))
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(counts) / counts.sum()
    mean = np.cumsum(counts * centres) / counts.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mean[-1] * weight - mean) ** 2 / (weight * (1.0 - weight))
    return float(centres[np.nanargmax(np.nan_to_num(between, nan=-1.0))])


class _Components(NamedTuple):
    """8-connected components of a mask: a label image (0 = none) and per label (index 0 unused) its area and box."""

    labels: np.ndarray
    area: np.ndarray
    top: np.ndarray
    left: np.ndarray
    bottom: np.ndarray  # exclusive
    right: np.ndarray  # exclusive


def _label(mask: np.ndarray) -> _Components:
    """Connected components by runs: each row's runs of ink are joined to the touching runs of the row above."""
    height, width = mask.shape
    edges = np.diff(np.pad(mask, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    run_row, run_start = np.nonzero(edges == 1)
    run_end = np.nonzero(edges == -1)[1]  # exclusive; row-major order pairs it with run_start
    # Keys order runs row by row; a run touches (8-connected) the runs of the row above whose
    # end >= its start and whose start <= its end, a contiguous range found by binary search.
    stride = width + 2
    start_key, end_key = run_row * stride + run_start, run_row * stride + run_end
    first = np.searchsorted(end_key, start_key - stride, side="left")
    stop = np.searchsorted(start_key, end_key - stride, side="right")
    touching = np.maximum(stop - first, 0)
    runs = np.repeat(np.arange(len(run_row)), touching)
    above = first[runs] + np.arange(len(runs)) - np.repeat(np.cumsum(touching) - touching, touching)
    parent = list(range(len(run_row)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in zip(runs.tolist(), above.tolist(), strict=True):
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([root(i) for i in range(len(parent))], dtype=np.int64)
    run_label = (np.unique(roots, return_inverse=True)[1] + 1).astype(np.int32)
    count = int(run_label.max(initial=0))
    paint = np.zeros((height, width + 1), dtype=np.int32)
    np.add.at(paint, (run_row, run_start), run_label)
    np.add.at(paint, (run_row, run_end), -run_label)
    area = np.bincount(run_label, weights=run_end - run_start, minlength=count + 1)
    top, left = np.full(count + 1, height), np.full(count + 1, width)
    bottom, right = np.zeros(count + 1, dtype=np.int64), np.zeros(count + 1, dtype=np.int64)
    np.minimum.at(top, run_label, run_row)
    np.maximum.at(bottom, run_label, run_row + 1)
    np.minimum.at(left, run_label, run_start)
    np.maximum.at(right, run_label, run_end)
    return _Components(np.cumsum(paint, axis=1)[:, :width], area, top, left, bottom, right)


def _grow(values: np.ndarray, radius: int) -> np.ndarray:
    """Grey dilation by a near-disc of ``radius`` px, padded by ``radius``: square and cross steps alternate (an octagon)."""
    grown = np.pad(values, radius)
    for step in range(radius):
        around = np.pad(grown, 1)
        across = np.maximum(np.maximum(around[1:-1, :-2], around[1:-1, 2:]), grown)
        if step % 2 == 0:
            around = np.pad(across, ((1, 1), (0, 0)))
            grown = np.maximum(np.maximum(around[:-2], around[2:]), across)
        else:
            grown = np.maximum(np.maximum(around[:-2, 1:-1], around[2:, 1:-1]), across)
    return grown


class Ink(NamedTuple):
    """An image's ink, found once and shared by the single-digit and the multi-digit readings."""

    map: np.ndarray  # ink level at working size, 0-1
    components: _Components
    keep: np.ndarray  # per component label: ink, not a speck

    @property
    def found(self) -> bool:
        return bool(self.keep.any())


def find_ink(image: str | Path | Image.Image | np.ndarray | Ink) -> Ink:
    """The flattened ink map at working size, stretched to 0-1, its components, and which of them are ink, not specks."""
    if isinstance(image, Ink):
        return image
    image = _as_image(image)
    level, contrast = _toward_ink(_pixels(image))
    ink = _flatten(level * _ink_side(level), np.min, np.max)
    top = float(ink.max())
    if top > 0:
        threshold = _otsu(np.clip(ink / top, 0.0, 1.0)) * top
        mask = ink > threshold
        if not mask.all():
            peak = float(np.percentile(ink[mask], 90))
            paper = ink[~mask]
            noise = 1.4826 * float(np.median(np.abs(paper - np.median(paper))))  # robust standard deviation
            if peak * contrast >= MIN_CONTRAST and peak >= MIN_SNR * noise:
                components = _label(mask)
                keep = components.area >= SPECK * components.area.max()
                keep[0] = False
                # NIST's digits were scanned bilevel: ink well past the threshold is full ink, however
                # faint the pencil or light the pressure; a ramp around it keeps the strokes' soft edges.
                return Ink(np.clip(ink / threshold - 0.5, 0.0, 1.0), components, keep)
    return Ink(np.zeros_like(ink), _label(np.zeros(ink.shape, dtype=bool)), np.zeros(1, dtype=bool))


def ink_map(image: Image.Image) -> np.ndarray:
    """Ink intensity in [0, 1] (1 = full ink, 0 = paper), whatever the polarity, colour and contrast of the original.

    The map is at working size (longer side at most ``WORK_SIDE``); shading, paper grain and specks are 0.
    """
    ink, components, keep = find_ink(image)
    return ink * _near(keep[components.labels])


def _near(mask: np.ndarray) -> np.ndarray:
    """``mask`` grown by one pixel, so the anti-aliased rim of a stroke stays with it."""
    return _grow(mask.astype(np.float32), 1)[1:-1, 1:-1] > 0


def _field(ink: np.ndarray, stroke: float) -> np.ndarray:
    """One digit's ink map (zero elsewhere) -> MNIST's 28x28: cropped, thickened, scaled to 20 px, centred by mass.

    ``stroke`` is the pen's width in pixels of ``ink``.
    """
    rows = np.flatnonzero((ink >= INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((ink >= INK_THRESHOLD).any(axis=0))
    if len(rows) == 0:
        return np.zeros((FIELD, FIELD), dtype=np.uint8)
    ink = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = ink.shape
    if max(height, width) < FINE:
        # a small digit is thickened on a finer grid, where a step of the dilation is a fraction of a pixel in the box
        factor = FINE / max(height, width)
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        ink = np.asarray(Image.fromarray(ink, mode="F").resize(size, Image.Resampling.BILINEAR), dtype=np.float32)
        height, width = ink.shape
        stroke *= factor
    radius = round((STROKE * max(height, width) - stroke) / 2)
    if radius > 0:
        ink = _grow(ink, radius)
        height, width = ink.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    boxed = np.clip(np.asarray(Image.fromarray(ink, mode="F").resize(size, Image.Resampling.LANCZOS), dtype=np.float32), 0.0, 1.0)
    boxed /= max(float(boxed.max()), 1e-6)  # MNIST's strokes reach full white whatever their width
    field = np.zeros((FIELD, FIELD), dtype=np.float32)
    total = boxed.sum()
    ys, xs = np.indices(boxed.shape)
    centre_y = (ys * boxed).sum() / total if total else boxed.shape[0] / 2
    centre_x = (xs * boxed).sum() / total if total else boxed.shape[1] / 2
    top = int(np.clip(round(FIELD / 2 - centre_y), 0, FIELD - boxed.shape[0]))
    left = int(np.clip(round(FIELD / 2 - centre_x), 0, FIELD - boxed.shape[1]))
    field[top : top + boxed.shape[0], left : left + boxed.shape[1]] = boxed
    return np.round(field * 255).astype(np.uint8)


def _stroke_width(mask: np.ndarray) -> float:
    """Mean pen width in pixels: area over half the outline (a stroke of width w and length L has area wL, outline 2L).

    The outline is counted in pixel edges, whose staircase is 4/pi longer than the true outline on average over directions.
    """
    padded = np.pad(mask, 1)
    edges = np.count_nonzero(padded[1:] != padded[:-1]) + np.count_nonzero(padded[:, 1:] != padded[:, :-1])
    return 2.0 * np.count_nonzero(mask) / edges * 4.0 / np.pi if edges else 0.0


def _digit(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return _field(ink * _near(mask), _stroke_width(mask))


def to_mnist(image: str | Path | Image.Image | np.ndarray | Ink) -> np.ndarray:
    """A 28x28 uint8 array in MNIST's format; all zeros if the image holds no ink."""
    ink, components, keep = find_ink(image)
    return _digit(ink, keep[components.labels])


def segment_digits(image: str | Path | Image.Image | np.ndarray | Ink, split_touching: bool = True) -> list[np.ndarray]:
    """An image of a written number -> one 28x28 MNIST-format array per digit, left to right.

    Components that overlap much in x are one digit (a 5 whose bar is detached, a 4 in two strokes);
    with ``split_touching``, a group much wider than tall holds touching digits and is cut at the
    columns with least ink (which also cuts the 0.5 % of single digits that are that wide).
    """
    ink, components, keep = find_ink(image)
    labels = np.flatnonzero(keep)
    groups: list[tuple[int, int, int, int, list[int]]] = []  # left, right, top, bottom, labels
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
    digits = []
    for left, right, top, bottom, members in sorted(groups):
        if max(bottom - top, right - left) < MIN_DIGIT * tallest:
            continue
        mask = np.isin(components.labels, members)
        cuts = _cuts(mask[:, left:right], bottom - top, _stroke_width(mask)) if split_touching else [(0, right - left)]
        for start, stop in cuts:
            piece = np.zeros_like(mask)
            piece[:, left + start : left + stop] = mask[:, left + start : left + stop]
            if piece.any():
                digits.append(_digit(ink, piece))
    return digits


def _cuts(mask: np.ndarray, height: int, stroke: float) -> list[tuple[int, int]]:
    """Column ranges of the digits in one group of ink: itself, or split where touching digits meet (least ink).

    A group hardly taller than its pen's width is a dash or an underline, not a row of digits.
    """
    width = mask.shape[1]
    if width <= SPLIT_ASPECT * height or height < 3 * stroke:
        return [(0, width)]
    count = min(max(2, round(width / (DIGIT_ASPECT * height))), width // 2)
    reach = max(1, width // (4 * count))
    profile = mask.sum(axis=0)
    bounds = [0]
    for k in range(1, count):
        start = max(bounds[-1] + 1, k * width // count - reach)
        window = profile[start : k * width // count + reach + 1]
        if len(window):
            bounds.append(start + int(np.argmin(window)))
    return [(a, b) for a, b in zip(bounds, [*bounds[1:], width], strict=True) if b > a]
