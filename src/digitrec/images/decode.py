"""Bytes, a path, a PIL image or an array -> uint8 pixels, upright; the one pixel limit; the pixel rule for arrays."""

from __future__ import annotations

import io
import math
import re
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyspng
from PIL import Image, ImageOps, UnidentifiedImageError

from digitrec.errors import DigitrecError, TooLarge
from digitrec.mnist_format import FIELD, PIXELS

WORK_PIXELS = 160 * 160  # the ink is found on at most about this many pixels: a digit holds no more detail, a wide
# number keeps its height (every development set reads as well as at 192 or 224 px a side, at 128 px two real images fewer)
#   ±25 % (benchmarks/tunables.py): 0.8x flags a real digit and loses a number of numbers-dev2; 1.25x reads one more
#   there and flags one more non-digit, for 1.56x the pixels to filter
MAX_PIXELS = 150_000_000  # larger images are refused before decoding (decompression bombs); 108 MP phone photos pass
ORIENTATION = 0x0112  # the EXIF tag
HIGH_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, as Pillow converts RGB to grey
_WORK_SIDE = math.isqrt(WORK_PIXELS)  # a JPEG decodes at a reduced scale down to this side: never fewer pixels than WORK_PIXELS


def open_image(path: str | Path | BinaryIO, *, max_side: int | None = None, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an image file or stream (first frame of an animation), upright as its EXIF says, into
    uint8 pixels: ``(H, W)`` grey, or ``(H, W, C)`` with C = 2 (grey, alpha), 3 (RGB) or 4 (RGBA).

    ``max_side`` lets a JPEG decode at a reduced scale (never below ``max_side`` px) when only that
    much detail is needed, several times faster for phone photos. An image of more than ``max_pixels``
    is refused from its header (:class:`digitrec.errors.TooLarge`), before anything is decoded. Pillow reads every header; an
    8-bit PNG is inflated by libspng straight into NumPy (a 1507x810 RGBA canvas: 9 ms against
    Pillow's 20 ms with the copy out of it).
    """
    source = str(path) if isinstance(path, str | Path) else getattr(path, "name", "<stream>")
    kind = "image"  # what the header says it is, for the error a damaged one gets
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_PIXELS below is the limit
            with Image.open(path) as image:
                kind = f"{image.format} image" if image.format else kind
                width, height = image.size
                if width * height > max_pixels:
                    raise TooLarge(f"the image is {width}x{height} pixels, more than the {max_pixels:,} accepted", source)
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
    except Image.DecompressionBombError as e:  # Pillow's own limit, met at the header before digitrec's when it is lower
        counted = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(counted[1]):,} pixels" if counted else "more pixels"
        raise TooLarge(f"the image has {size}, more than the {max_pixels:,} accepted", source) from None
    except Exception:
        # Pillow's decoders (and libspng) report damaged data with many exception types (OSError,
        # SyntaxError, struct.error, IndexError, EOFError, RuntimeError...) and their own wording; to the user each means
        # the same thing, said without the library's internals
        raise DigitrecError(f"not a readable image (a damaged or truncated {kind})", source) from None


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


def pixels_of(image: str | Path | Image.Image | np.ndarray | bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Any image as uint8 pixels, shaped as :func:`open_image` gives them; a file of more than ``max_pixels`` is refused."""
    if isinstance(image, str | Path):
        return open_image(image, max_side=_WORK_SIDE, max_pixels=max_pixels)
    if isinstance(image, bytes | bytearray | memoryview):
        return open_image(io.BytesIO(image), max_side=_WORK_SIDE, max_pixels=max_pixels)
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


_F, _P = FIELD, PIXELS
DIGIT_SHAPES = (f"({_F}, {_F}), ({_P},), (N, {_F}, {_F}), (N, {_P}), (N, 1, {_F}, {_F}), ({_F}, {_F}, 1), (N, {_F}, {_F}, 1), "
                f"and RGB ({_F}, {_F}, 3), (N, {_F}, {_F}, 3) or (N, 3, {_F}, {_F})")


def digit_batch(array: np.ndarray) -> np.ndarray | None:
    """Digits already in MNIST's format (white on black, 28x28), as uint8 ``(N, 28, 28)``; None if not shaped like them.

    The shapes PyTorch and Keras users hold are accepted (:data:`DIGIT_SHAPES`): flat rows,
    single-channel images channel-first or channel-last, and RGB, converted to grey. A
    ``(3, 28, 28)`` array is three digits, not one colour image.
    """
    array = np.asarray(array)
    shape = array.shape
    field = (FIELD, FIELD)
    if shape in ((PIXELS,), field, (*field, 1), (*field, 3)):
        array = array.reshape(1, *shape) if shape != (PIXELS,) else array.reshape(1, *field)
    elif array.ndim == 2 and shape[1] == PIXELS:
        array = array.reshape(-1, *field)
    if array.ndim == 4 and array.shape[1:] in ((1, *field), (3, *field)):
        array = np.moveaxis(array, 1, -1)
    if array.ndim == 4 and array.shape[1:3] == field and array.shape[3] in (1, 3):
        pixels = as_pixels(array)
        return pixels[..., 0] if pixels.shape[3] == 1 else np.rint(pixels @ LUMA).astype(np.uint8)
    if array.ndim == 3 and array.shape[1:] == field:
        return as_pixels(array)
    return None
