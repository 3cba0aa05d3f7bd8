"""Synthetic development sets for digitrec's image pipeline, built deterministically (fixed seeds).

    python benchmarks/devsets.py [--out .cache/devsets] [--only NAME ...] [--force] [--mnist DIR]

Each set is a folder of PNG files with a ``labels.tsv`` (``file``, ``label``, ``style``): the label is
the digit, the number for ``numbers``, and empty for ``negatives``. A set whose folder holds a
``.built.json`` marker with the same build parameters (seed, sizes, a digest of this file, the
versions of NumPy, Pillow and SciPy) is kept as it is, unless ``--force``. Sets are
built in a hidden folder beside their place and moved in when complete, so an interrupted build
leaves nothing half-made. ``import devsets; devsets.build("numbers")`` does the same from Python.

Digits: dark ink on white paper, MNIST's own test digits or scikit-learn's 8x8 digits.

* ``sklearn8``: scikit-learn's ``load_digits()``, 1,797 digits (levels 0-16), as 8x8 grey PNGs,
  paper = 255 - v * 255 / 16.
* ``sklearn32``: the same, enlarged to 32x32 with PIL's bicubic filter.
* Degraded MNIST, the first 1,000 digits of MNIST's test set in each (the same digits in every set):
  ``mnist16`` shrunk to 16x16 by area averaging; ``mnist8`` to 8x8; ``mnist16-binary`` the 16x16
  image thresholded at 50 % ink; ``mnist-thick`` grey dilation (3x3) at 28x28, then 16x16;
  ``mnist-thin`` the strokes thinned to a one-pixel skeleton (Zhang-Suen, on the ink above 50 %) at
  28x28, binary; ``mnist-frame`` cropped to the ink above 25 % (so the stroke touches all four
  sides), then scaled so the longer side is 16 px, aspect kept: the images are not square;
  ``mnist-boxed`` written in a printed box, as on a form: the 28x28 digit enlarged 2-4x (bilinear), a
  box 1-3 px wide drawn 0-6 px (of MNIST's scale) outside its 20x20 frame (so a stroke may touch it),
  a white margin of 2-12 px, the page turned by up to 4 degrees either way;
  ``mnist-grid`` written on squared paper: the digit enlarged 2-4x on a page 1.3-1.8 times its size,
  grid lines 1 px wide every 5-8 px at MNIST's scale, 10-45 % as dark as the ink, under the ink,
  the page turned by up to 3 degrees either way.

Not digits (``negatives``, 580 images, 28 to 400 px, mostly dark on light, a fifth light on dark):

* ``font-letter``: letters from the DejaVu and Liberation fonts, without those easily read as
  digits (O o I l Z z S s b g q B y G T, nor i j, whose dot a reader drops as a speck);
* ``font-symbol``: # % @ * + = < > ~ ^ and currency and maths signs;
* ``hand-letter``: font letters made to look drawn (random affine, elastic wobble, thinner or thicker);
* ``photo``: crops of the sample photos shipped with matplotlib and scikit-learn;
* ``icon``: matplotlib's toolbar icons and sample logos, some kept transparent;
* ``scribble``: random Bezier curves and polylines, three to five strokes;
* ``shape``: rectangles, triangles, stars, crosses, hash marks (no circles, ovals or single strokes);
* ``multidigit``: two or three MNIST test digits side by side;
* ``noise``: Gaussian, or salt and pepper;
* ``blank``: white (or black), light grey, paper texture, a lone speck.

They were looked at on contact sheets, not one by one: a few scribbles may resemble a digit.

Numbers (``numbers``, 420 images): 2 to 5 MNIST test digits (drawn in a shuffled order from test
digits 5,000-9,999; ``multidigit`` draws from 2,000-4,999) with per-digit scale (0.85-1.15) and
baseline (+-3 px) jitter and gaps from overlapping (-4 px) to wide (+20 px) at MNIST's scale,
enlarged 1-3x, on six kinds of paper: ``white``, ``ruled`` (light blue notebook lines, blue or black
ink), ``gradient`` (uneven light), ``shadow`` (a soft shadow over part of the page), ``pencil`` (grey
ink, low contrast) and ``dark`` (light ink on a dark board). ``numbers-train`` (600 images) is built the
same way from MNIST's training digits: rules for cutting numbers are chosen on it, then checked on
``numbers`` and numbers-dev.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import itertools
import json
import os
import shutil
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import matplotlib
import numpy as np
import PIL
import scipy
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / ".cache" / "devsets"
DEFAULT_MNIST = Path(os.environ.get("DIGITREC_DATA") or ROOT.parent / "shared" / "data" / "mnist")
FONTS = Path("/usr/share/fonts/truetype")
MARKER = ".built.json"
LABELS = "labels.tsv"
SEED = 12  # issue 12
BUILDER = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]  # this file: any change to it rebuilds the sets

MNIST_STYLES = ("mnist16", "mnist8", "mnist16-binary", "mnist-thick", "mnist-thin", "mnist-frame", "mnist-boxed", "mnist-grid")
MNIST_DIGITS = 1000  # the first test digits, in every degraded-MNIST set
MULTIDIGIT_FROM = 2000  # negatives' multidigit style draws test digits 2,000-4,999 in a shuffled order
NUMBERS_FROM = 5000  # the numbers set draws test digits 5,000-9,999 in a shuffled order (MNIST has runs like 0123456789)
NEGATIVE_COUNTS = {"font-letter": 90, "font-symbol": 40, "hand-letter": 100, "photo": 60, "icon": 30, "scribble": 60,
                   "shape": 60, "multidigit": 60, "noise": 40, "blank": 40}
NUMBER_STYLES = ("white", "ruled", "gradient", "shadow", "pencil", "dark")
NUMBERS_PER_STYLE = 70
NUMBERS_TRAIN_PER_STYLE = 100  # numbers-train: MNIST's training digits, for choosing the cutting rules without the test digits
LIGHT_ON_DARK = 0.2  # share of negatives drawn light on dark

# Letters not easily read as a digit (i and j neither: a digit reader drops their dots as specks, leaving a 1),
# and symbols that are neither digits nor single strokes
LETTERS = "ACDEFHJKLMNPQRUVWXYacdefhkmnprtuvwx"
SYMBOLS = "#%@*+=<>~^€£¥¶ΩπΣ√"


@dataclass(frozen=True)
class Item:
    """One image of a built set."""

    path: Path
    label: str  # the digit, the number, or "" for an image that is not a digit
    style: str


class SetWriter:
    """Writes a set's PNG files, numbered in order, and its ``labels.tsv``."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.rows: list[tuple[str, str, str]] = []

    def add(self, image: Image.Image | np.ndarray, label: str, style: str) -> None:
        if isinstance(image, np.ndarray):
            image = Image.fromarray(image)
        name = f"{style}-{len(self.rows):05d}.png"
        image.save(self.folder / name, optimize=False)
        self.rows.append((name, label, style))

    def finish(self) -> None:
        with (self.folder / LABELS).open("w", newline="") as f:
            writer = csv.writer(f, delimiter="\t", lineterminator="\n")
            writer.writerow(["file", "label", "style"])
            writer.writerows(self.rows)


def read_labels(folder: Path) -> list[Item]:
    """A built set's images, in file order, from its ``labels.tsv``."""
    with (folder / LABELS).open(newline="") as f:
        return [Item(folder / row["file"], row["label"], row["style"]) for row in csv.DictReader(f, delimiter="\t")]


def _rng(*key: str) -> np.random.Generator:
    """A generator of its own for each set and style, so that changing one leaves the others as they were."""
    return np.random.default_rng([SEED, *(zlib.crc32(k.encode()) for k in key)])


def _build(folder: Path, params: dict[str, object], draw: Callable[[SetWriter], None], force: bool) -> Path:
    wanted = {"set": folder.name, "seed": SEED, **params, "builder": BUILDER, "numpy": np.__version__, "pillow": PIL.__version__,
              "scipy": scipy.__version__}
    marker = folder / MARKER
    if not force and marker.is_file() and json.loads(marker.read_text()) == wanted:
        return folder
    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    writer = SetWriter(partial)
    draw(writer)
    writer.finish()
    (partial / MARKER).write_text(json.dumps(wanted, indent=1) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder


# --- MNIST --------------------------------------------------------------------------------------

@cache
def mnist_digits(mnist: Path = DEFAULT_MNIST, part: str = "t10k") -> tuple[np.ndarray, np.ndarray]:
    """MNIST's test (``t10k``) or training (``train``) digits (uint8, white ink on black, 28x28) and labels, from the IDX files."""

    def idx(stem: str, offset: int) -> np.ndarray:
        path = mnist / f"{stem}.gz"
        raw = gzip.decompress(path.read_bytes()) if path.is_file() else (mnist / stem).read_bytes()
        return np.frombuffer(raw, np.uint8, offset=offset)

    images = idx(f"{part}-images-idx3-ubyte", 16).reshape(-1, 28, 28)
    labels = idx(f"{part}-labels-idx1-ubyte", 8)
    return images, labels


def _resize(ink: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    return np.asarray(Image.fromarray(ink).resize(size, resample))


def _thin(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning: the mask's strokes reduced to a one-pixel-wide skeleton."""
    m = np.pad(mask.astype(np.uint8), 1)
    changed = True
    while changed:
        changed = False
        for step in (0, 1):
            p2, p3, p4, p5 = m[:-2, 1:-1], m[:-2, 2:], m[1:-1, 2:], m[2:, 2:]
            p6, p7, p8, p9 = m[2:, 1:-1], m[2:, :-2], m[1:-1, :-2], m[:-2, :-2]
            ring = [p2, p3, p4, p5, p6, p7, p8, p9, p2]
            count = sum(ring[:8])
            transitions = sum((a == 0) & (b == 1) for a, b in itertools.pairwise(ring))
            if step == 0:
                side = (p2 * p4 * p6 == 0) & (p4 * p6 * p8 == 0)
            else:
                side = (p2 * p4 * p8 == 0) & (p2 * p6 * p8 == 0)
            remove = (m[1:-1, 1:-1] == 1) & (count >= 2) & (count <= 6) & (transitions == 1) & side
            if remove.any():
                m[1:-1, 1:-1][remove] = 0
                changed = True
    return m[1:-1, 1:-1].astype(bool)


def _ink_box(ink: np.ndarray, level: int) -> tuple[slice, slice]:
    rows, cols = np.nonzero(ink >= level)
    return slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1)


def degrade(ink: np.ndarray, style: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """One MNIST digit (white ink on black, 28x28) in a degraded-MNIST style, still white on black (``rng``: for ``mnist-boxed``)."""
    if style == "mnist16":
        return _resize(ink, (16, 16), Image.Resampling.BOX)
    if style == "mnist8":
        return _resize(ink, (8, 8), Image.Resampling.BOX)
    if style == "mnist16-binary":
        return np.where(_resize(ink, (16, 16), Image.Resampling.BOX) >= 128, 255, 0).astype(np.uint8)
    if style == "mnist-thick":
        return _resize(ndimage.grey_dilation(ink, size=(3, 3)), (16, 16), Image.Resampling.BOX)
    if style == "mnist-thin":
        return np.where(_thin(ink >= 128), 255, 0).astype(np.uint8)
    if style == "mnist-frame":
        crop = ink[_ink_box(ink, 64)]
        height, width = crop.shape
        scale = 16 / max(height, width)
        size = (max(2, round(width * scale)), max(2, round(height * scale)))
        return _resize(crop, size, Image.Resampling.LANCZOS)
    if style == "mnist-boxed":
        rng = rng or np.random.default_rng()
        scale = rng.uniform(2, 4)
        outside, line, margin = rng.uniform(0, 6) * scale, round(rng.uniform(1, 3)), round(rng.uniform(2, 12))
        side = round(28 * scale)
        box = round(4 * scale - outside)  # where the box's line starts: MNIST's 20x20 frame begins 4 px in
        pad = max(0, -box) + margin
        page = np.zeros((side + 2 * pad, side + 2 * pad), np.float32)
        page[pad : pad + side, pad : pad + side] = _resize(ink, (side, side), Image.Resampling.BILINEAR)
        first, last = pad + box, pad + side - box - line
        for edge in (first, last):
            page[edge : edge + line, first : last + line] = page[first : last + line, edge : edge + line] = 255
        turn = Image.fromarray(np.clip(page, 0, 255).astype(np.uint8)).rotate(rng.uniform(-4, 4), Image.Resampling.BILINEAR)
        return np.asarray(turn)
    if style == "mnist-grid":
        rng = rng or np.random.default_rng()
        scale = rng.uniform(2, 4)
        side, page = round(28 * scale), round(28 * scale * rng.uniform(1.3, 1.8))
        grid = np.zeros((page, page), np.float32)
        step, start, level = rng.uniform(5, 8) * scale, rng.uniform(0, 5 * scale), 255 * rng.uniform(0.1, 0.45)
        for line in np.arange(start, page, step).astype(int):
            grid[line, :] = grid[:, line] = level
        top, left = rng.integers(0, page - side + 1, size=2)
        digit = np.zeros_like(grid)
        digit[top : top + side, left : left + side] = _resize(ink, (side, side), Image.Resampling.BILINEAR)
        turn = Image.fromarray(np.maximum(grid, digit).astype(np.uint8)).rotate(rng.uniform(-3, 3), Image.Resampling.BILINEAR)
        return np.asarray(turn)
    raise ValueError(f"unknown degraded-MNIST style {style!r}")


# --- drawing helpers ------------------------------------------------------------------------------

def _side(rng: np.random.Generator, low: int = 28, high: int = 400) -> int:
    """A side length, log-uniform between ``low`` and ``high``."""
    return round(np.exp(rng.uniform(np.log(low), np.log(high))))


def _on_paper(ink: np.ndarray, rng: np.random.Generator, light_on_dark: bool | None = None) -> np.ndarray:
    """An ink map (0-1) as a grey image: dark ink on light paper, or (a fifth of the time) light on dark."""
    if light_on_dark is None:
        light_on_dark = bool(rng.random() < LIGHT_ON_DARK)
    paper, pen = (rng.uniform(0, 50), rng.uniform(200, 255)) if light_on_dark else (rng.uniform(220, 255), rng.uniform(0, 60))
    grey = paper + (pen - paper) * ink + rng.normal(0, rng.uniform(0, 3), ink.shape)
    return np.clip(np.round(grey), 0, 255).astype(np.uint8)


def _fonts() -> list[Path]:
    return sorted(p for p in FONTS.glob("*/*.ttf") if p.name.startswith(("DejaVu", "Liberation")) and "Math" not in p.name)


@cache
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


def _has_glyph(font: ImageFont.FreeTypeFont, char: str) -> bool:
    """Whether the font draws ``char`` itself rather than its missing-glyph box."""
    def drawn(text: str) -> bytes:
        canvas = Image.new("L", (2 * font.size, 2 * font.size), 0)
        ImageDraw.Draw(canvas).text((0, 0), text, fill=255, font=font)
        return canvas.tobytes()

    return drawn(char) != drawn("\ue000")


def _glyph(char: str, font_path: Path, side: int, fill: float) -> np.ndarray:
    """``char`` drawn white on black, centred in a ``side`` x ``side`` square, about ``fill`` of its height."""
    font = _font(font_path, max(8, round(side * fill)))
    canvas = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(canvas)
    left, top, right, bottom = draw.textbbox((0, 0), char, font=font)
    draw.text(((side - (right - left)) / 2 - left, (side - (bottom - top)) / 2 - top), char, fill=255, font=font)
    return np.asarray(canvas, np.float32) / 255


def _pick_glyph(rng: np.random.Generator, chars: str, fonts: list[Path]) -> tuple[str, Path]:
    while True:
        char, path = chars[rng.integers(len(chars))], fonts[rng.integers(len(fonts))]
        if _has_glyph(_font(path, 32), char):
            return char, path


def _place(ink: np.ndarray, rng: np.random.Generator, side: int) -> np.ndarray:
    """An ink map scaled to fill 50-90 % of a ``side`` square, placed at a random spot in it."""
    rows, cols = np.nonzero(ink > 0.1)
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    scale = rng.uniform(0.5, 0.9) * side / max(crop.shape)
    height, width = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    small = np.asarray(Image.fromarray(crop).resize((width, height), Image.Resampling.BILINEAR))
    canvas = np.zeros((side, side), np.float32)
    top, left = rng.integers(0, side - height + 1), rng.integers(0, side - width + 1)
    canvas[top : top + height, left : left + width] = small
    return canvas


def _distort(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A font glyph made to look drawn: random affine, elastic wobble, thinner or thicker stroke, softened."""
    side = ink.shape[0]
    angle = np.deg2rad(rng.uniform(-15, 15))
    shear, scale = rng.uniform(-0.3, 0.3), rng.uniform(0.85, 1.1)
    matrix = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) @ np.array([[1, shear], [0, 1]]) / scale
    centre = np.array([side / 2, side / 2])
    ink = ndimage.affine_transform(ink, matrix, offset=centre - matrix @ centre, order=1)
    grid = np.mgrid[0:side, 0:side].astype(np.float64)
    for axis in range(2):  # a smooth displacement field, 2 % of the side on average
        field = ndimage.gaussian_filter(rng.normal(0, 1, ink.shape), side / 8)
        grid[axis] += field / field.std() * side * 0.02
    ink = ndimage.map_coordinates(ink, grid, order=1)
    change = rng.choice([-1, 0, 1, 2])
    if change > 0:
        ink = ndimage.grey_dilation(ink, size=(2 * change + 1,) * 2)
    elif change < 0:
        thinner = ndimage.grey_erosion(ink, size=(3, 3))
        ink = thinner if (thinner > 0.5).sum() > 0.4 * (ink > 0.5).sum() else ink
    return np.clip(ndimage.gaussian_filter(ink, 0.7), 0, 1)


def _bezier(points: np.ndarray, steps: int = 40) -> list[tuple[float, float]]:
    t = np.linspace(0, 1, steps)[:, None]
    p0, p1, p2, p3 = points
    curve = (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3
    return [(float(x), float(y)) for x, y in curve]


def _star(rng: np.random.Generator, side: int) -> list[tuple[float, float]]:
    tips = int(rng.integers(5, 8))
    angles = np.arange(2 * tips) * np.pi / tips + rng.uniform(0, np.pi)
    radii = np.where(np.arange(2 * tips) % 2 == 0, 0.45, rng.uniform(0.18, 0.25)) * side
    return [(side / 2 + r * np.cos(a), side / 2 + r * np.sin(a)) for r, a in zip(radii, angles, strict=True)]


def _smallest_angle(corners: np.ndarray) -> float:
    """A triangle's smallest angle, in degrees."""
    angles = []
    for i in range(3):
        u, v = corners[i - 1] - corners[i], corners[i - 2] - corners[i]
        angles.append(np.degrees(np.arccos(np.clip(u @ v / np.linalg.norm(u) / np.linalg.norm(v), -1, 1))))
    return float(min(angles))


def _shape(rng: np.random.Generator, side: int) -> np.ndarray:
    canvas = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(canvas)
    width = max(1, round(side * rng.uniform(0.03, 0.1)))
    filled = bool(rng.random() < 0.3)
    kind = rng.choice(["rectangle", "triangle", "star", "cross", "hash"])
    margin = side * 0.15
    if kind == "rectangle":
        x0, y0 = rng.uniform(margin, side * 0.35, 2)
        x1, y1 = rng.uniform(side * 0.65, side - margin, 2)
        draw.rectangle((x0, y0, x1, y1), fill=255 if filled else None, outline=255, width=width)
    elif kind == "triangle":
        corners = rng.uniform(margin, side - margin, (3, 2))
        while _smallest_angle(corners) < 35 or abs(np.linalg.det(corners[1:] - corners[0])) < (side / 3) ** 2:
            corners = rng.uniform(margin, side - margin, (3, 2))  # no slivers (they read as a 1), no tiny ones
        draw.polygon([(float(x), float(y)) for x, y in corners], fill=255 if filled else None, outline=255, width=width)
    elif kind == "star":
        draw.polygon(_star(rng, side), fill=255 if filled else None, outline=255, width=width)
    elif kind == "cross":
        lo, hi = margin, side - margin
        lines = [((lo, lo), (hi, hi)), ((lo, hi), (hi, lo))] if rng.random() < 0.5 else [((side / 2, lo), (side / 2, hi)),
                                                                                          ((lo, side / 2), (hi, side / 2))]
        for line in lines:
            draw.line(line, fill=255, width=width)
    else:
        for offset in (side * 0.38, side * 0.62):
            draw.line(((offset, margin), (offset, side - margin)), fill=255, width=width)
            draw.line(((margin, offset), (side - margin, offset)), fill=255, width=width)
    return np.asarray(canvas.rotate(float(rng.uniform(-30, 30)), resample=Image.Resampling.BILINEAR), np.float32) / 255


def _scribble(rng: np.random.Generator, side: int) -> np.ndarray:
    canvas = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(canvas)
    width = max(1, round(side * rng.uniform(0.02, 0.07)))
    for _ in range(int(rng.integers(3, 6))):
        if rng.random() < 0.5:
            points = _bezier(rng.uniform(0.05, 0.95, (4, 2)) * side)
        else:
            points = [(float(x), float(y)) for x, y in rng.uniform(0.05, 0.95, (int(rng.integers(4, 8)), 2)) * side]
        draw.line(points, fill=255, width=width, joint="curve")
    return np.asarray(canvas, np.float32) / 255


def _row_of_digits(rng: np.random.Generator, digits: list[np.ndarray], gaps: list[int], jitter: bool) -> np.ndarray:
    """MNIST digits (white on black) cropped to their ink and set side by side: an ink map (0-1).

    A negative gap overlaps neighbours, by at most half the narrower one's width.
    """
    pieces = []
    for ink in digits:
        crop = ink[_ink_box(ink, 1)].astype(np.float32) / 255
        if jitter:
            scale = rng.uniform(0.85, 1.15)
            size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
            crop = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.BILINEAR))
        pieces.append(crop)
    gaps = [max(gap, -(min(a.shape[1], b.shape[1]) // 2)) for gap, (a, b) in zip(gaps, itertools.pairwise(pieces), strict=True)]
    shifts = [int(rng.integers(-3, 4)) if jitter else 0 for _ in pieces]
    tallest = max(p.shape[0] for p in pieces)
    top = 4 + max(0, -min(shifts))
    canvas = np.zeros((top + tallest + 4 + max(0, max(shifts)), 8 + sum(p.shape[1] for p in pieces) + sum(gaps)), np.float32)
    x = 4
    for piece, shift, gap in zip(pieces, shifts, [*gaps, 0], strict=True):
        bottom = top + tallest + shift  # a shared baseline, jittered
        region = canvas[bottom - piece.shape[0] : bottom, x : x + piece.shape[1]]
        np.maximum(region, piece, out=region)
        x += piece.shape[1] + gap
    return canvas


def _scaled(ink: np.ndarray, factor: float) -> np.ndarray:
    size = (max(1, round(ink.shape[1] * factor)), max(1, round(ink.shape[0] * factor)))
    return np.asarray(Image.fromarray(ink).resize(size, Image.Resampling.BILINEAR))


# --- the sets -------------------------------------------------------------------------------------

def _sklearn_paper() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return np.round(255 - digits.images * 255 / 16).astype(np.uint8), digits.target


def build_sklearn8(out: Path = DEFAULT_OUT, force: bool = False) -> Path:
    def draw(writer: SetWriter) -> None:
        for paper, target in zip(*_sklearn_paper(), strict=True):
            writer.add(paper, str(target), "sklearn8")

    return _build(out / "sklearn8", {}, draw, force)


def build_sklearn32(out: Path = DEFAULT_OUT, force: bool = False) -> Path:
    def draw(writer: SetWriter) -> None:
        for paper, target in zip(*_sklearn_paper(), strict=True):
            writer.add(Image.fromarray(paper).resize((32, 32), Image.Resampling.BICUBIC), str(target), "sklearn32")

    return _build(out / "sklearn32", {"size": 32}, draw, force)


def build_mnist_style(style: str, out: Path = DEFAULT_OUT, mnist: Path = DEFAULT_MNIST, force: bool = False) -> Path:
    def draw(writer: SetWriter) -> None:
        images, labels = mnist_digits(mnist)
        rng = _rng(style)
        for ink, label in zip(images[:MNIST_DIGITS], labels[:MNIST_DIGITS], strict=True):
            writer.add(255 - degrade(ink, style, rng), str(label), style)

    return _build(out / style, {"digits": MNIST_DIGITS}, draw, force)


def _sample_images() -> dict[str, list[Image.Image]]:
    from sklearn.datasets import load_sample_images

    def opened(path: Path, mode: str) -> Image.Image:
        with Image.open(path) as image:
            return image.convert(mode)

    data = Path(matplotlib.get_data_path())
    photos = [opened(data / "sample_data" / "grace_hopper.jpg", "RGB")]
    photos += [Image.fromarray(image) for image in load_sample_images().images]
    icons = [opened(path, "RGBA") for path in sorted((data / "images").glob("*.png"))]
    icons += [opened(data / "sample_data" / name, "RGBA") for name in ("logo2.png", "Minduka_Present_Blue_Pack.png")]
    return {"photo": photos, "icon": icons}


def _photo(rng: np.random.Generator, photos: list[Image.Image]) -> Image.Image:
    photo = photos[rng.integers(len(photos))]
    crop = round(min(photo.size) * rng.uniform(0.15, 1.0))
    aspect = rng.uniform(0.7, 1.4)
    width, height = min(photo.width, round(crop * aspect)), crop
    left, top = rng.integers(0, photo.width - width + 1), rng.integers(0, photo.height - height + 1)
    side = _side(rng)
    image = photo.crop((left, top, left + width, top + height)).resize((max(8, round(side * aspect)), side), Image.Resampling.LANCZOS)
    return image.convert("L") if rng.random() < 0.3 else image


def _icon(rng: np.random.Generator, icons: list[Image.Image], index: int) -> Image.Image:
    icon = icons[index % len(icons)]
    side = _side(rng, 24, 160)
    image = icon.resize((side, max(8, round(side * icon.height / icon.width))), Image.Resampling.LANCZOS)
    if rng.random() < 0.5:  # kept transparent, as icons are found
        return image
    paper = Image.new("RGBA", image.size, (255, 255, 255, 255) if rng.random() > LIGHT_ON_DARK else (20, 20, 20, 255))
    return Image.alpha_composite(paper, image).convert("RGB")


def _noise(rng: np.random.Generator, side: int) -> np.ndarray:
    if rng.random() < 0.5:
        grey = rng.normal(rng.uniform(60, 200), rng.uniform(20, 70), (side, side))
    else:
        grey = np.full((side, side), rng.uniform(200, 255))
        dots = rng.random((side, side))
        amount = rng.uniform(0.01, 0.2)
        grey[dots < amount / 2] = 0
        grey[dots > 1 - amount / 2] = 255
    return np.clip(np.round(grey), 0, 255).astype(np.uint8)


def _blank(rng: np.random.Generator, side: int, index: int) -> np.ndarray:
    kind = index % 4
    if kind == 0:  # white, or a black screen
        grey = np.full((side, side), 255.0 if rng.random() > LIGHT_ON_DARK else rng.uniform(0, 30))
    elif kind == 1:  # light grey
        grey = np.full((side, side), rng.uniform(190, 245)) + rng.normal(0, 1, (side, side))
    elif kind == 2:  # paper texture: faint blotches and grain
        grey = rng.uniform(225, 245) + ndimage.gaussian_filter(rng.normal(0, 1, (side, side)), side / 20) * side / 4
        grey += rng.normal(0, 2, (side, side))
    else:  # a lone speck on white
        grey = np.full((side, side), rng.uniform(235, 255))
        y, x = rng.integers(side // 8, side - side // 8, 2)
        radius = rng.uniform(0.6, 3)
        rows, cols = np.ogrid[:side, :side]
        grey[(rows - y) ** 2 + (cols - x) ** 2 <= radius**2] = rng.uniform(0, 80)
    return np.clip(np.round(grey), 0, 255).astype(np.uint8)


def build_negatives(out: Path = DEFAULT_OUT, mnist: Path = DEFAULT_MNIST, force: bool = False) -> Path:
    def draw(writer: SetWriter) -> None:
        fonts = _fonts()
        samples = _sample_images()
        images, _ = mnist_digits(mnist)
        pool = iter(_rng("negatives", "digits").permutation(np.arange(MULTIDIGIT_FROM, NUMBERS_FROM)))
        for style, count in NEGATIVE_COUNTS.items():
            rng = _rng("negatives", style)
            for index in range(count):
                if style in ("font-letter", "font-symbol"):
                    char, font = _pick_glyph(rng, LETTERS if style == "font-letter" else SYMBOLS, fonts)
                    side = _side(rng)
                    image = _on_paper(_place(_glyph(char, font, min(4 * side, 600), 0.5), rng, side), rng)
                elif style == "hand-letter":
                    char, font = _pick_glyph(rng, LETTERS, fonts)
                    image = _on_paper(_place(_distort(_glyph(char, font, 96, 0.6), rng), rng, _side(rng)), rng)
                elif style == "photo":
                    image = _photo(rng, samples["photo"])
                elif style == "icon":
                    image = _icon(rng, samples["icon"], index)
                elif style == "scribble":
                    image = _on_paper(_scribble(rng, _side(rng)), rng)
                elif style == "shape":
                    image = _on_paper(_shape(rng, _side(rng)), rng)
                elif style == "multidigit":
                    many = int(rng.integers(2, 4))
                    chosen = [images[next(pool)] for _ in range(many)]
                    row = _row_of_digits(rng, chosen, list(rng.integers(2, 12, many - 1)), False)
                    image = _on_paper(_scaled(row, np.exp(rng.uniform(0, np.log(6)))), rng)
                elif style == "noise":
                    image = _noise(rng, _side(rng))
                else:
                    image = _blank(rng, _side(rng), index)
                writer.add(image, "", style)

    return _build(out / "negatives", {"counts": NEGATIVE_COUNTS, "multidigit_from": MULTIDIGIT_FROM}, draw, force)


def _gaps(rng: np.random.Generator, many: int) -> list[int]:
    """Gaps between neighbouring digits at MNIST's scale: overlapping, touching, ordinary or wide."""
    kinds = rng.choice(4, many - 1, p=[0.15, 0.15, 0.5, 0.2])
    ranges = [(-4, -1), (0, 0), (1, 6), (8, 20)]
    return [int(rng.integers(ranges[k][0], ranges[k][1] + 1)) for k in kinds]


def _number_image(rng: np.random.Generator, ink: np.ndarray, style: str) -> Image.Image:
    """A number's ink map (0-1) written on a style of paper: light falling on paper and ink reflecting it."""
    margin = int(rng.integers(4, 30))
    ink = np.pad(ink, margin)
    height, width = ink.shape
    rows, cols = np.mgrid[0:height, 0:width]
    light = np.ones_like(ink)
    colour = style == "ruled"
    paper, pen = rng.uniform(0.9, 1.0), rng.uniform(0.0, 0.2)
    if style == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        ramp = (np.cos(angle) * cols / width + np.sin(angle) * rows / height) + 1
        darkest = rng.uniform(0.5, 0.8)
        light = darkest + (1 - darkest) * (ramp - ramp.min()) / (ramp.max() - ramp.min())
    elif style == "shadow":
        angle = rng.uniform(0, 2 * np.pi)
        side = np.cos(angle) * (cols - width / 2) + np.sin(angle) * (rows - height / 2) > rng.uniform(-0.2, 0.3) * max(height, width)
        light = 1 - rng.uniform(0.3, 0.5) * ndimage.gaussian_filter(side.astype(np.float64), max(height, width) * 0.08)
    elif style == "pencil":
        pen = rng.uniform(0.4, 0.6)
        ink = ink * rng.uniform(0.75, 1.0)
    elif style == "dark":
        paper, pen = rng.uniform(0.05, 0.25), rng.uniform(0.8, 1.0)
    reflect = paper + (pen - paper) * ink
    grain = rng.normal(0, rng.uniform(0.004, 0.015), ink.shape)
    if not colour:
        return Image.fromarray(np.clip(np.round(255 * (light * reflect + grain)), 0, 255).astype(np.uint8))
    line_colour = np.array([rng.uniform(0.55, 0.75), rng.uniform(0.7, 0.82), rng.uniform(0.9, 1.0)])
    pen_colour = np.array([0.1, 0.15, 0.55]) if rng.random() < 0.5 else np.array([0.05, 0.05, 0.08])
    spacing = rng.uniform(0.8, 1.3) * (height - 2 * margin)
    baseline = height - margin - rng.uniform(0, 0.1) * (height - 2 * margin)
    thickness = max(1.0, spacing / 25)
    lines = ((baseline - rows) % spacing < thickness).astype(np.float64)[..., None]
    page = paper * (1 - lines) + line_colour * lines
    rgb = page + (pen_colour - page) * ink[..., None] + grain[..., None]
    return Image.fromarray(np.clip(np.round(255 * rgb), 0, 255).astype(np.uint8), "RGB")


def build_numbers(out: Path = DEFAULT_OUT, mnist: Path = DEFAULT_MNIST, force: bool = False, part: str = "t10k") -> Path:
    """The numbers set from MNIST's test digits (``numbers``), or from its training digits (``numbers-train``: to choose on)."""
    test = part == "t10k"
    name, first, per_style = ("numbers", NUMBERS_FROM, NUMBERS_PER_STYLE) if test else ("numbers-train", 0, NUMBERS_TRAIN_PER_STYLE)

    def draw(writer: SetWriter) -> None:
        images, labels = mnist_digits(mnist, part)
        pool = iter(_rng(name, "digits").permutation(np.arange(first, len(images))))
        for style in NUMBER_STYLES:
            rng = _rng(name, style)
            for _ in range(per_style):
                many = int(rng.integers(2, 6))
                chosen = [next(pool) for _ in range(many)]
                row = _row_of_digits(rng, [images[i] for i in chosen], _gaps(rng, many), True)
                ink = np.clip(_scaled(row, rng.uniform(1, 3)), 0, 1)
                writer.add(_number_image(rng, ink, style), "".join(str(labels[i]) for i in chosen), style)

    return _build(out / name, {"per_style": per_style, "numbers_from": first, "part": part}, draw, force)


BUILDERS: dict[str, Callable[[Path, Path, bool], Path]] = {
    "sklearn8": lambda out, mnist, force: build_sklearn8(out, force),
    "sklearn32": lambda out, mnist, force: build_sklearn32(out, force),
    **{style: (lambda out, mnist, force, style=style: build_mnist_style(style, out, mnist, force)) for style in MNIST_STYLES},
    "negatives": build_negatives,
    "numbers": build_numbers,
    "numbers-train": lambda out, mnist, force: build_numbers(out, mnist, force, part="train"),
}


def build(name: str, out: Path = DEFAULT_OUT, mnist: Path = DEFAULT_MNIST, force: bool = False) -> Path:
    """Build one set (unless it is built already with the same parameters) and return its folder."""
    return BUILDERS[name](Path(out), Path(mnist), force)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the sets (default: .cache/devsets in the checkout)")
    parser.add_argument("--only", nargs="+", choices=list(BUILDERS), metavar="NAME", help=f"sets to build: {', '.join(BUILDERS)}")
    parser.add_argument("--force", action="store_true", help="rebuild sets that are already built")
    parser.add_argument("--mnist", type=Path, default=DEFAULT_MNIST, help="folder of MNIST's IDX files (default: $DIGITREC_DATA "
                                                                           "or ../shared/data/mnist)")
    args = parser.parse_args()
    for name in args.only or BUILDERS:
        started = time.perf_counter()
        folder = build(name, args.out, args.mnist, args.force)
        count = len(read_labels(folder))
        print(f"{name:<15} {count:>5} images  {time.perf_counter() - started:6.1f} s  {folder}")


if __name__ == "__main__":
    main()
