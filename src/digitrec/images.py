"""Any image of a digit -> MNIST's format, the way MNIST itself was made.

MNIST's digits are white on black, cropped to the ink, scaled so the longer side is 20 px
(anti-aliased, aspect kept) and placed in a 28x28 field with their centre of mass at the centre.
A model trained on MNIST only works on a person's image once it has been brought into that form.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from digitrec.errors import DigitrecError

BOX = 20  # MNIST's digits fit a 20x20 box inside the 28x28 field
FIELD = 28
INK_THRESHOLD = 0.25  # fraction of the full ink level that counts as ink when cropping


def open_image(path: str | Path) -> Image.Image:
    """Decode an image file (first frame of an animation), upright as its EXIF says."""
    try:
        with Image.open(path) as image:
            image.seek(0)
            image.load()
            return ImageOps.exif_transpose(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DigitrecError(f"not a readable image ({e.__class__.__name__}: {e})", str(path)) from None


def _grayscale(image: Image.Image) -> np.ndarray:
    """Luminance in [0, 1], transparency composited over the colour that contrasts with the ink."""
    if image.mode in ("P", "PA", "LA", "RGBA", "La", "RGBa") or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        luminance = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        alpha = rgba[..., 3]
        if alpha.min() < 1.0:
            opaque = alpha > 0.5
            ink_is_light = opaque.any() and luminance[opaque].mean() > 0.5
            backdrop = 0.0 if ink_is_light else 1.0
            return luminance * alpha + backdrop * (1.0 - alpha)
        return luminance
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def ink_map(image: Image.Image) -> np.ndarray:
    """Ink intensity in [0, 1] (1 = full ink), whatever the polarity and contrast of the original."""
    gray = _grayscale(image)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    # Most of a digit image is background, and its border almost always is: dark ink on light
    # paper has a light border and must be inverted to MNIST's white-on-black.
    if np.median(border) > 0.5:
        gray = 1.0 - gray
    background = float(np.median(gray))
    peak = float(np.percentile(gray, 99.5))
    if peak - background < 1e-3:
        return np.zeros_like(gray)
    return np.clip((gray - background) / (peak - background), 0.0, 1.0)


def to_mnist(image: str | Path | Image.Image | np.ndarray) -> np.ndarray:
    """A 28x28 uint8 array in MNIST's format; all zeros if the image holds no ink."""
    if isinstance(image, str | Path):
        image = open_image(image)
    elif isinstance(image, np.ndarray):
        image = Image.fromarray(image.astype(np.uint8) if image.dtype != np.uint8 else image)
    ink = ink_map(image)
    rows = np.flatnonzero((ink >= INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((ink >= INK_THRESHOLD).any(axis=0))
    if len(rows) == 0:
        return np.zeros((FIELD, FIELD), dtype=np.uint8)
    ink = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = ink.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    boxed = np.asarray(Image.fromarray(ink, mode="F").resize(size, Image.Resampling.LANCZOS), dtype=np.float32)
    boxed = np.clip(boxed, 0.0, 1.0)
    field = np.zeros((FIELD, FIELD), dtype=np.float32)
    total = boxed.sum()
    ys, xs = np.indices(boxed.shape)
    centre_y = (ys * boxed).sum() / total if total else boxed.shape[0] / 2
    centre_x = (xs * boxed).sum() / total if total else boxed.shape[1] / 2
    top = int(np.clip(round(FIELD / 2 - centre_y), 0, FIELD - boxed.shape[0]))
    left = int(np.clip(round(FIELD / 2 - centre_x), 0, FIELD - boxed.shape[1]))
    field[top : top + boxed.shape[0], left : left + boxed.shape[1]] = boxed
    return np.round(field * 255).astype(np.uint8)
