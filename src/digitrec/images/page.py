"""Page: one image, read once. Decoded when made; its ink found, cleaned and grouped when first asked for, and kept."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from digitrec.images import clean, cuts, field, ink
from digitrec.images.decode import MAX_PIXELS, pixels_of


class _kept:
    """A property made on first use and kept in the instance: :func:`functools.cached_property` less the lock that
    Python 3.11's takes at every first use. With the lock a 32 px scan took 6.51 M instructions to read, against
    6.12 M before the Page; without it, 6.13 M (callgrind, PYTHONHASHSEED=0, BENCHMARKS.md)."""

    def __init__(self, make: Callable[[Any], Any]):
        self.make, self.name, self.__doc__ = make, make.__name__, make.__doc__

    def __get__(self, page: Any, owner: type | None = None) -> Any:
        if page is None:
            return self
        value = page.__dict__[self.name] = self.make(page)  # found in the instance from now on, before this descriptor
        return value


class _Found(NamedTuple):
    """The steps from an image's pixels to its ink, kept for :attr:`Page.steps`."""

    planes: np.ndarray  # colour at working size, (C, H, W) in [0, 1]
    farther: np.ndarray  # on the ink axis, ink the farther way
    levels: np.ndarray  # ink level: the paper's own level removed (but on a scan)
    cleaned: ink.Ink | None  # the ink that stands out, cleaned (None: nothing stands out of the paper)
    ink: ink.Ink  # what is read: the cleaned ink, or none at all
    nothing: str | None  # why there is nothing to read (:attr:`Page.nothing`); None where there is


class Page:
    """One image a person gave, in every form the readers take, each made once on first use.

    ``Page.of(image)`` decodes a file path, encoded bytes, a PIL image or an array (a file of more than
    ``max_pixels`` is refused before it is decoded); ``Page.mnist(digit)`` holds a digit already in MNIST's
    format, read as it is. Then :attr:`digit` is the image as one 28x28 digit, :attr:`count` how many
    separate groups of ink it holds, :attr:`options` the ways its groups may be cut into digits, :attr:`row`
    the row reader's input, and :attr:`steps` each step from the image to its ink, as pictures.
    """

    def __init__(self, pixels: np.ndarray | None, source: str | None = None, digit: np.ndarray | None = None):
        self.source = source
        self._pixels = pixels
        self._digit = digit

    @classmethod
    def of(cls, image: str | Path | Image.Image | np.ndarray | bytes, *, max_pixels: int = MAX_PIXELS,
           source: str | None = None) -> Page:
        """An image: a file path, encoded image bytes, a PIL image, or an array ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)``."""
        named = str(image) if isinstance(image, str | Path) else source
        return cls(pixels_of(image, max_pixels), named)

    @classmethod
    def mnist(cls, digit: np.ndarray, source: str | None = None) -> Page:
        """A uint8 28x28 digit already in MNIST's format (white on black, centred): read as it is, never cut."""
        return cls(None, source, digit)

    @_kept
    def _found(self) -> _Found:
        assert self._pixels is not None, "a Page.mnist digit has no steps to its ink"
        pixels, self._pixels = self._pixels, None  # (a big image's own pixels are needed no longer)
        planes = ink.planes(pixels)
        level, contrast = ink.toward_ink(planes)
        scan = ink.a_scan(level)
        farther, levels = ink.ink_levels(level, scan)
        stands_out = ink.threshold(levels, contrast, scan)
        if isinstance(stands_out, str):  # nothing stands out of the paper, and why
            return _Found(planes, farther, levels, None, ink.blank(levels.shape), stands_out)
        cleaned = clean.cleaned(stands_out, scan)
        # squared paper alone, or a dot on a blank page, is no ink
        if not cleaned.found:
            nothing = "lines"
        else:
            nothing = "dot" if ink.a_dot(cleaned, pixels.shape[0] / levels.shape[0]) else None
        return _Found(planes, farther, levels, cleaned, ink.blank(levels.shape) if nothing else cleaned, nothing)

    @property
    def ink(self) -> ink.Ink:
        """The page's ink at working size: its map (0-1), components and which of them are kept."""
        return self._found.ink

    @_kept
    def scan(self) -> bool:
        """Whether the image is a scan or a crop (at most ``SCAN_SIDE`` px), read as MNIST's recipe reads it."""
        return self._digit is None and self.ink.scan

    @_kept
    def digit(self) -> np.ndarray:
        """The image as one digit in MNIST's format: 28x28 uint8, all zeros where it holds no ink."""
        return self._digit if self._digit is not None else field.whole(self.ink)

    @_kept
    def blank(self) -> bool:
        """Whether the page holds no ink to read (a blank page, or one whose only marks are dust or ruled lines)."""
        return not self.digit.any()

    @property
    def nothing(self) -> str | None:
        """Why the page holds nothing to read, where it holds nothing: ``"blank"`` (nothing stands out of the
        paper), ``"busy"`` (nothing stands out of the image's own texture: a photo of a scene), ``"lines"`` (only
        the lines of squared or ruled paper, a grid or a form's boxes, all dropped), ``"dot"`` (one dot alone).
        None where there is ink to read."""
        if self._digit is not None:
            return None if self._digit.any() else "blank"
        return self._found.nothing  # (not from the digit: a number's reading never makes it)

    @_kept
    def count(self) -> int:
        """How many separate groups of ink the page holds (touching digits count as one): 1 for a digit, 0 for a blank."""
        return 1 if self._digit is not None else len(cuts.groups(self.ink))

    @_kept
    def _number(self) -> tuple[ink.Ink, list[cuts.Group]]:
        """The ink read as a written number, without the rule lines through its row, and its groups left to right."""
        row_ink = clean.without_rules(self.ink)
        return row_ink, cuts.groups(row_ink)

    @_kept
    def options(self) -> list[list[list[np.ndarray]]]:
        """Each group of ink left to right, as the ways it may be read (:func:`digitrec.images.cuts.options`)."""
        return [[[self._digit]]] if self._digit is not None else cuts.options(*self._number)

    @_kept
    def row(self) -> np.ndarray | None:
        """The row reader's input (:func:`digitrec.images.cuts.row`); None for a blank page or a digit in MNIST's format."""
        return None if self._digit is not None else cuts.row(*self._number)

    @property
    def steps(self) -> list[tuple[str, np.ndarray]]:
        """Each step from the image to its ink, as a named image (:func:`strip` shows them); none for a digit in MNIST's format."""
        if self._digit is not None:
            return []
        found = self._found
        steps = [("image", np.moveaxis(found.planes, 0, -1)), ("ink axis", found.farther),
                 ("ink" if self.scan else "paper removed", found.levels)]
        if found.cleaned is not None:
            labels = found.cleaned.components.labels
            steps.append(("ink kept (grey: dropped)", np.where(found.cleaned.keep[labels], 1.0, np.where(labels > 0, 0.35, 0.0))))
        return steps


def to_mnist(image: str | Path | Image.Image | np.ndarray | bytes) -> np.ndarray:
    """An image (a file path, encoded bytes, a PIL image or an array) as one digit in MNIST's format (:attr:`Page.digit`)."""
    return Page.of(image).digit


def strip(steps: list[tuple[str, np.ndarray]], height: int = 112) -> Image.Image:
    """Named images (a :attr:`Page.steps`, then what the model saw) side by side and captioned: why an image reads as it does.

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
        small = max(picture.size) <= field.FIELD
        tiles.append((caption, picture.resize((width, height), Image.Resampling.NEAREST if small else Image.Resampling.BOX)))
    strip = Image.new("RGB", (sum(t.width for _, t in tiles) + 8 * (len(tiles) + 1), height + 28), "white")
    draw, left = ImageDraw.Draw(strip), 8
    for caption, tile in tiles:
        strip.paste(tile.convert("RGB"), (left, 8))
        draw.text((left, height + 12), caption, fill="black")
        left += tile.width + 8
    return strip
