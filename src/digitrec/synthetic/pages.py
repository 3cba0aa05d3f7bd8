"""Pages for the digit detector: digits, and things that are not one, each as digitrec brings a user's image to the
digit model (:func:`digitrec.images.to_mnist`).

Things that are not one digit:

* letters and signs from the fonts matplotlib ships (STIX, Computer Modern) and OpenCV's Hershey
  stroke fonts, many of them slanted, turned and wobbled as a hand draws them; letters a reader
  takes for digits (O, l, Z, S, b, q, ...) are left out;
* scribbles of two to five smooth strokes, polygons, stars, arrows and crossed lines.

None of these come from the fonts or the drawing code of ``benchmarks/devsets.py``'s negatives, which
judge the detector. Pages are 10 to 300 px, so scans and photos alike go through the preprocessing
they will meet; dark on light mostly, light on dark a fifth of the time, with grain.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from digitrec.images import to_mnist
from digitrec.mnist_format import FIELD

CANVAS = 140  # px a side on which a page's ink is drawn before it is cropped and scaled to the page's size
FONTS = Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf"
TTF = ("STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
       "cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmti10.ttf", "cmtt10.ttf")
HERSHEY = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
           cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_HERSHEY_SCRIPT_COMPLEX)
LIKE_DIGITS = set("OoIlZzSsbgqByGTij")  # read as 0, 1, 2, 5, 6, 9, 8, 4, 7 (i and j lose their dot as a speck)
LETTERS = "".join(c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in LIKE_DIGITS)
SIGNS = "#%@&*+=<>~^$£€¥§¶©®?ΓΔΘΛΞΠΣΦΨΩαβγζηθκλμνξπτυφχψω←→↑↓↔⇒∀∂∃∅∇∈∑∞∫≈≠≤≥⊕⊗★☆♠♣♥♦♪"
HERSHEY_SIGNS = "#%@&*+=<>~^$?{}"  # the Hershey fonts draw ASCII alone
KINDS = {"font": 0.35, "stroke font": 0.35, "scribble": 0.15, "shape": 0.15}  # shares of the pages that are not digits


def _warped(ink: np.ndarray, rng: np.random.Generator, turn: float = 15.0, shear: float = 0.3) -> np.ndarray:
    """Turned, slanted and stretched about the centre; half the time wobbled as a hand draws."""
    height, width = ink.shape
    angle, slant, stretch = math.radians(rng.uniform(-turn, turn)), rng.uniform(-shear, shear), rng.uniform(0.8, 1.25)
    matrix = np.array([[stretch * math.cos(angle), slant - math.sin(angle), 0],
                       [math.sin(angle), math.cos(angle) / stretch, 0]], np.float32)
    centre = np.array([width / 2, height / 2], np.float32)
    matrix[:, 2] = centre - matrix[:, :2] @ centre
    ink = cv2.warpAffine(ink, matrix, (width, height))
    if rng.random() < 0.5:
        rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
        drift = [cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0), 8) * rng.uniform(20, 60)
                 for _ in range(2)]
        ink = cv2.remap(ink, cols + drift[0], rows + drift[1], cv2.INTER_LINEAR)
    return ink


def _font_glyph(rng: np.random.Generator) -> np.ndarray:
    chars = LETTERS if rng.random() < 0.6 else SIGNS
    while True:  # a font without the glyph draws nothing (or next to nothing): draw another
        font = ImageFont.truetype(str(FONTS / TTF[rng.integers(len(TTF))]), 70)
        canvas = Image.new("L", (CANVAS, CANVAS), 0)
        ImageDraw.Draw(canvas).text((35, 20), chars[rng.integers(len(chars))], fill=255, font=font)
        ink = np.asarray(canvas, np.float32) / 255
        if ink.sum() > 30:
            return ink


def _stroke_glyph(rng: np.random.Generator) -> np.ndarray:
    canvas = np.zeros((CANVAS, CANVAS), np.uint8)
    chars = LETTERS + HERSHEY_SIGNS
    font = HERSHEY[rng.integers(len(HERSHEY))] | (cv2.FONT_ITALIC if rng.random() < 0.3 else 0)
    cv2.putText(canvas, chars[rng.integers(len(chars))], (35, 100), font, 2.2, 255, int(rng.integers(2, 9)), cv2.LINE_AA)
    return canvas.astype(np.float32) / 255


def _scribble(rng: np.random.Generator) -> np.ndarray:
    """Two to five strokes, each through three to six random points, smoothed by corner cutting."""
    canvas = np.zeros((CANVAS, CANVAS), np.float32)
    for _ in range(int(rng.integers(2, 6))):
        path = rng.uniform(25, CANVAS - 25, (int(rng.integers(3, 7)), 2))
        for _ in range(3):
            path = np.concatenate([path[:1], (path[:-1] + path[1:]) / 2, path[-1:]])
            path = (path[:-1] + path[1:]) / 2
        cv2.polylines(canvas, [path.astype(np.int32)], False, 1.0, int(rng.integers(3, 9)), cv2.LINE_AA)
    return canvas


def _shape(rng: np.random.Generator) -> np.ndarray:
    """An arrow, a filled star, a polygon (filled or drawn), or two to four crossing lines."""
    canvas = np.zeros((CANVAS, CANVAS), np.float32)
    pen, centre, kind = int(rng.integers(4, 10)), CANVAS / 2, rng.integers(4)
    if kind == 0:
        start, end = rng.uniform(20, CANVAS - 20, (2, 2)).astype(int)
        cv2.arrowedLine(canvas, tuple(map(int, start)), tuple(map(int, end)), 1.0, pen, cv2.LINE_AA, tipLength=rng.uniform(0.2, 0.5))
    elif kind == 1:
        points = int(rng.integers(5, 9))
        angles = np.linspace(0, 2 * np.pi, 2 * points, endpoint=False) + rng.uniform(0, 2 * np.pi)
        radii = np.where(np.arange(2 * points) % 2, rng.uniform(0.3, 0.6), 1.0) * 50
        star = np.stack([centre + radii * np.cos(angles), centre + radii * np.sin(angles)], 1)
        cv2.fillPoly(canvas, [star.astype(np.int32)], 1.0, cv2.LINE_AA)
    elif kind == 2:
        angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 7))))
        corners = np.stack([centre + 50 * np.cos(angles), centre + 50 * np.sin(angles)], 1).astype(np.int32)
        if rng.random() < 0.5:
            cv2.fillPoly(canvas, [corners], 1.0, cv2.LINE_AA)
        else:
            cv2.polylines(canvas, [corners], True, 1.0, pen, cv2.LINE_AA)
    else:
        for _ in range(int(rng.integers(2, 5))):
            x0, y0, x1, y1 = rng.uniform(20, CANVAS - 20, 4).astype(int)
            cv2.line(canvas, (int(x0), int(y0)), (int(x1), int(y1)), 1.0, pen, cv2.LINE_AA)
    return canvas


def _digit(rng: np.random.Generator, digit: np.ndarray) -> np.ndarray:
    canvas = np.zeros((CANVAS, CANVAS), np.float32)
    canvas[14:-14, 14:-14] = cv2.resize(digit.astype(np.float32) / 255, (CANVAS - 28, CANVAS - 28), interpolation=cv2.INTER_LINEAR)
    return _warped(canvas, rng, turn=10, shear=0.2) if rng.random() < 0.5 else canvas


def _page(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ink (0-1) on the canvas -> a grey page of 10 to 300 px a side, cropped with a margin around the ink; thickened or
    thinned a fifth of the time."""
    rows, cols = np.nonzero(ink > 0.1)
    margin = int(rng.integers(4, 30))
    ink = ink[max(rows.min() - margin, 0) : rows.max() + margin + 1, max(cols.min() - margin, 0) : cols.max() + margin + 1]
    if rng.random() < 0.2:
        ink = cv2.dilate(ink, np.ones((5, 5), np.uint8)) if rng.random() < 0.5 else cv2.erode(ink, np.ones((3, 3), np.uint8))
    side = int(rng.integers(10, 33)) if rng.random() < 0.2 else int(np.exp(rng.uniform(np.log(36), np.log(300))))
    scale = side / max(ink.shape)
    ink = cv2.resize(ink, (max(round(ink.shape[1] * scale), 4), max(round(ink.shape[0] * scale), 4)), interpolation=cv2.INTER_AREA)
    paper, pen = rng.uniform(170, 255), rng.uniform(0, 90)
    grey = paper + (pen - paper) * np.clip(ink, 0, 1) + rng.normal(0, rng.uniform(0, 6), ink.shape)
    if rng.random() < 0.2:
        grey = 255 - grey
    return np.clip(grey, 0, 255).astype(np.uint8)


def pages(count: int, seed: int | Sequence[int], digits: np.ndarray | None = None) -> np.ndarray:
    """``count`` 28x28 inputs as digitrec makes them of pages: of these uint8 ``(N, 28, 28)`` digits, or without them of
    things that are not one. A page the preprocessing finds no ink on is dropped."""
    rng = np.random.default_rng(seed)
    drawers = {"font": _font_glyph, "stroke font": _stroke_glyph, "scribble": _scribble, "shape": _shape}
    made = []
    for _ in range(count):
        if digits is not None:
            ink = _digit(rng, digits[rng.integers(len(digits))])
        else:
            drawn = rng.choice(list(KINDS), p=list(KINDS.values()))
            ink = drawers[drawn](rng)
            if drawn in ("font", "stroke font") and rng.random() < 0.7:
                ink = _warped(ink, rng)
        if ink.max() > 0.1:
            seen = to_mnist(_page(ink, rng))
            if seen.any():
                made.append(seen)
    return np.stack(made) if made else np.zeros((0, FIELD, FIELD), np.uint8)
