"""What a user relies on when they hand digitrec their own picture of a digit.

Every image here is drawn with PIL in the test: a person's photo, scan or canvas drawing must come
out in MNIST's format (white on black, 20 px box, centred by mass in 28x28) whatever its colours,
polarity, contrast, lighting, transparency, orientation or file format.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, features

from digitrec.errors import DigitrecError, TooLarge
from digitrec.images import Page, open_image, to_mnist

REALWORLD = Path(__file__).parents[1] / ".." / "shared" / "data" / "realworld-dev"

Stroke = list[tuple[float, float]]  # a polyline in coordinates relative to the canvas, 0-1
SEVEN: list[Stroke] = [[(0.3, 0.2), (0.7, 0.2), (0.45, 0.8)]]
ONE: list[Stroke] = [[(0.5, 0.2), (0.5, 0.8)]]
ZERO: list[Stroke] = [[(0.5 + 0.18 * math.sin(a / 12 * math.pi), 0.5 - 0.3 * math.cos(a / 12 * math.pi)) for a in range(25)]]
# a 5 whose top bar was lifted off the paper: two separate pieces of ink
FIVE: list[Stroke] = [[(0.4, 0.2), (0.65, 0.2)], [(0.38, 0.3), (0.36, 0.48), (0.55, 0.46), (0.63, 0.6), (0.52, 0.78), (0.34, 0.74)]]


def _pen(image: Image.Image, strokes: list[Stroke], ink: str | tuple[int, ...], width: int, left: float, top: float, side: float) -> None:
    """Draw strokes with a round pen, their unit square mapped to ``side`` px at (``left``, ``top``)."""
    pen = ImageDraw.Draw(image)
    for stroke in strokes:
        points = [(left + x * side, top + y * side) for x, y in stroke]
        pen.line(points, fill=ink, width=width, joint="curve")
        for x, y in points:
            pen.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=ink)


def drawing(
    strokes: list[Stroke], size: tuple[int, int] = (200, 200), ink: str | tuple[int, ...] = "black",
    paper: str | tuple[int, ...] = "white", width: int = 12, mode: str = "RGB",
) -> Image.Image:
    """One digit drawn in the centred square of a canvas."""
    image = Image.new(mode, size, paper)
    side = min(size)
    _pen(image, strokes, ink, width, (size[0] - side) / 2, (size[1] - side) / 2, side)
    return image


def close(a: np.ndarray, b: np.ndarray, tolerance: float = 3.0) -> bool:
    """Same 28x28 digit: mean absolute difference under ``tolerance`` grey levels, up to a shift of one pixel.

    Centring by mass moves a digit by whole pixels, so a half-pixel change in the source can move it by one.
    """
    a, b = np.pad(a.astype(np.float32), 1), b.astype(np.float32)
    return min(float(np.abs(a[dy : dy + 28, dx : dx + 28] - b).mean()) for dy in range(3) for dx in range(3)) < tolerance


def bounding_box(digit: np.ndarray) -> tuple[int, int]:
    rows, cols = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def centre_of_mass(digit: np.ndarray) -> tuple[float, float]:
    ys, xs = np.indices(digit.shape)
    total = digit.sum(dtype=np.float64)
    return (ys * digit).sum() / total, (xs * digit).sum() / total


@pytest.fixture(scope="module")
def seven() -> np.ndarray:
    return to_mnist(drawing(SEVEN))


def test_result_is_mnist_format_white_ink_on_black(seven: np.ndarray) -> None:
    assert seven.shape == (28, 28) and seven.dtype == np.uint8
    assert seven.max() == 255  # full-white strokes
    # MNIST's recipe: the ink fits a 20x20 box, its centre of mass at the field's centre (a top-heavy digit's box
    # may reach the field's edge, as 1.4 % of MNIST's own training digits do)
    rows, cols = np.flatnonzero(seven.any(axis=1)), np.flatnonzero(seven.any(axis=0))
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 == 20 and min(rows[-1] - rows[0], cols[-1] - cols[0]) < 20
    ys, xs = np.indices(seven.shape)
    assert abs((ys * seven).sum() / seven.sum() - 14) <= 0.5 and abs((xs * seven).sum() / seven.sum() - 14) <= 0.5


def test_dark_on_light_and_light_on_dark_give_the_same_digit(seven: np.ndarray) -> None:
    assert close(to_mnist(drawing(SEVEN, ink="white", paper="black")), seven, 1.0)


@pytest.mark.parametrize(("ink", "paper"), [("blue", "white"), ("red", "white"), ((20, 30, 140), (235, 225, 200)), ("yellow", "navy")])
def test_any_ink_colour_on_any_paper(seven: np.ndarray, ink: str | tuple[int, ...], paper: str | tuple[int, ...]) -> None:
    assert close(to_mnist(drawing(SEVEN, ink=ink, paper=paper)), seven)


@pytest.mark.parametrize("ink", ["black", "white"])
def test_strokes_on_a_transparent_canvas(seven: np.ndarray, ink: str) -> None:
    canvas = drawing(SEVEN, ink=ink, paper=(0, 0, 0, 0), mode="RGBA")
    assert close(to_mnist(canvas), seven)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    upright = drawing(SEVEN, size=(300, 200))
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: show the stored pixels rotated 90 degrees clockwise
    upright.rotate(90, expand=True).save(path, exif=exif, quality=95)
    assert open_image(path).shape[:2] == (200, 300)
    assert close(to_mnist(path), to_mnist(upright))
    png = tmp_path / "phone.png"
    upright.rotate(90, expand=True).save(png, exif=exif)
    assert open_image(png).shape[:2] == (200, 300)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "P", "1"])
def test_a_png_decodes_to_the_pixels_pillow_gives(tmp_path: Path, mode: str) -> None:
    """libspng inflates the plain 8-bit PNGs, Pillow the rest: the pixels are the same either way."""
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 256, (37, 53, 4), dtype=np.uint8), "RGBA").convert(mode)
    picture.save(tmp_path / "x.png")
    with Image.open(tmp_path / "x.png") as reopened:
        expected = np.asarray(reopened.convert({"P": "RGBA", "1": "L"}.get(mode, mode)))
    assert np.array_equal(open_image(tmp_path / "x.png"), expected)


def test_a_16_bit_colour_png_decodes_as_pillow_brings_it_to_8_bits(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "deep.png"), np.random.default_rng(0).integers(0, 65536, (20, 30, 3), dtype=np.uint16))
    with Image.open(tmp_path / "deep.png") as reopened:
        assert reopened.mode == "RGB"
        expected = np.asarray(reopened)
    assert np.array_equal(open_image(tmp_path / "deep.png"), expected)


@pytest.mark.parametrize(("suffix", "options"), [
    (".png", {}), (".bmp", {}), (".tiff", {}), (".jpg", {"quality": 95}), (".webp", {"lossless": True}), (".gif", {}),
])
def test_common_formats_decode(tmp_path: Path, seven: np.ndarray, suffix: str, options: dict) -> None:
    if suffix == ".webp" and not features.check("webp"):
        pytest.skip("this Pillow was built without WebP support")
    path = tmp_path / f"seven{suffix}"
    drawing(SEVEN).save(path, **options)
    assert close(to_mnist(path), seven)


def test_animated_gif_uses_its_first_frame(tmp_path: Path, seven: np.ndarray) -> None:
    path = tmp_path / "animated.gif"
    drawing(SEVEN).save(path, save_all=True, append_images=[drawing(ZERO), drawing(ONE)], duration=100)
    assert close(to_mnist(path), seven)


def test_sixteen_bit_greyscale_is_not_clipped(tmp_path: Path, seven: np.ndarray) -> None:
    # scanners write 16-bit files; a naive conversion to 8 bits would turn the whole page white
    eight_bit = np.asarray(drawing(SEVEN, mode="L"), dtype=np.uint16)
    path = tmp_path / "scan.tiff"
    Image.fromarray(eight_bit * 257).save(path)
    assert close(to_mnist(path), seven)


def test_numpy_arrays_in_bytes_or_unit_floats(seven: np.ndarray) -> None:
    pixels = np.asarray(drawing(SEVEN, mode="L"))
    assert close(to_mnist(pixels), seven, 1.0)
    assert close(to_mnist(pixels / 255.0), seven, 1.0)


@pytest.mark.parametrize(("strokes", "size"), [(SEVEN, (200, 200)), (ONE, (200, 200)), (ZERO, (90, 400)), (SEVEN, (1200, 500))])
def test_longest_side_is_20_px_and_centre_of_mass_at_the_centre(strokes: list[Stroke], size: tuple[int, int]) -> None:
    digit = to_mnist(drawing(strokes, size=size, width=max(3, min(size) // 16)))
    assert max(bounding_box(digit)) == 20
    y, x = centre_of_mass(digit)
    assert abs(y - 14) <= 1 and abs(x - 14) <= 1  # MNIST's own centre of mass is at (14.0, 14.0)


def test_aspect_ratio_is_kept() -> None:
    height, width = bounding_box(to_mnist(drawing(ONE)))
    assert height == 20 and width < 10


def test_faint_pencil_is_stretched_to_full_range(seven: np.ndarray) -> None:
    faint = to_mnist(drawing(SEVEN, ink=(230, 230, 230)))
    assert faint.max() == 255
    assert close(faint, seven)


def test_thin_pen_is_thickened_like_mnist(seven: np.ndarray) -> None:
    thin = to_mnist(drawing(SEVEN, size=(600, 600), width=3))
    # the model was trained on MNIST's pen; a hairline would be a digit it never saw
    assert close(thin, seven, 6.0)


def _lit_page(light: str, size: int = 300) -> np.ndarray:
    """Beige paper photographed under uneven light, as float RGB."""
    ys, xs = np.mgrid[0:size, 0:size] / size
    if light == "shadow":  # darkening towards one corner
        gain = 1 - 0.45 * (xs + ys) / 2
    else:  # vignetting: a bright spot off-centre, dim corners
        gain = 1 - 0.45 * ((xs - 0.3) ** 2 + (ys - 0.25) ** 2)
    return np.array([235.0, 225.0, 205.0]) * gain[..., None]


@pytest.mark.parametrize(("light", "darkening"), [("shadow", 0.15), ("vignette", 0.85)])
def test_uneven_light_does_not_become_ink(seven: np.ndarray, light: str, darkening: float) -> None:
    page = _lit_page(light)
    ink = np.asarray(drawing(SEVEN, size=(300, 300), width=18, mode="L")) < 128
    page[ink] *= darkening  # dark ink, or pencil only 15% darker than the paper it is on
    page += np.random.default_rng(0).normal(0, 3, page.shape)
    assert close(to_mnist(np.clip(page, 0, 255).astype(np.uint8)), seven, 6.0)
    assert not to_mnist(_lit_page(light).astype(np.uint8)).any()


@pytest.mark.parametrize("page", ["white", "black", "noisy"])
def test_blank_page_gives_all_zeros(page: str) -> None:
    if page == "noisy":
        noise = np.random.default_rng(0).normal(0, 6, size=(240, 320, 1))
        image = Image.fromarray(np.clip(np.array([225, 215, 195]) + noise, 0, 255).astype(np.uint8))
    else:
        image = Image.new("RGB", (320, 240), page)
    assert not to_mnist(image).any()
    assert Page.of(image).options == [] and Page.of(image).blank


def test_specks_far_from_the_digit_do_not_move_the_crop(seven: np.ndarray) -> None:
    image = drawing(SEVEN)
    pen = ImageDraw.Draw(image)
    for x, y in ((10, 10), (185, 190), (190, 20)):
        pen.ellipse((x, y, x + 2, y + 2), fill="black")
    assert close(to_mnist(image), seven, 1.0)


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(("name", "content", "reason"), [
    pytest.param("notes.png", b"this is not an image at all", "not a readable image", id="text"),
    pytest.param("empty.jpg", b"", "not a readable image", id="empty"),
    pytest.param("cut.png", "truncated", "not a readable image (a damaged or truncated PNG image)", id="truncated"),
    pytest.param("bomb.png", _png_header_only(13_000, 12_000), "pixels", id="156-megapixels"),
    pytest.param("huge-bomb.png", _png_header_only(100_000, 100_000), "pixels", id="10-gigapixels"),
])
def test_unreadable_files_give_one_line_errors_naming_the_file(tmp_path: Path, name: str, content: bytes | str, reason: str) -> None:
    path = tmp_path / name
    if content == "truncated":
        drawing(SEVEN).save(path)
        content = path.read_bytes()[: len(path.read_bytes()) // 2]
    path.write_bytes(content)
    with pytest.raises(DigitrecError) as excinfo:
        to_mnist(path)
    assert excinfo.value.source == str(path)
    assert reason in excinfo.value.reason and "\n" not in str(excinfo.value)
    assert not any(internal in excinfo.value.reason for internal in ("spng", "Error", "stream"))  # said for people


def test_a_caller_sets_a_lower_pixel_limit_which_the_header_alone_decides(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(_png_header_only(2_000, 1_000))  # no pixel data: decoding would fail, the limit refuses it first
    with pytest.raises(TooLarge, match="2000x1000 pixels, more than the 1,000,000 accepted"):
        Page.of(path, max_pixels=1_000_000)
    drawing(SEVEN).save(path)
    assert Page.of(path, max_pixels=200 * 200).digit.any()
    path.write_bytes(_png_header_only(20_000, 10_000))  # beyond Pillow's own limit, which refuses it as the header opens
    with pytest.raises(TooLarge, match="the image has 200,000,000 pixels, more than the 150,000,000 accepted"):
        Page.of(path)


def test_a_page_is_read_once_however_it_is_asked(tmp_path: Path) -> None:
    path = tmp_path / "seven-oh.png"
    _number(SEVEN, ZERO).save(path)
    page = Page.of(path)
    assert page.source == str(path) and page.count == 2 and not page.blank
    assert page.options is page.options and page.row is page.row  # made on first use, then kept
    assert [len(group[0]) for group in page.options] == [1, 1] and page.row.shape[0] == 28
    assert [caption for caption, _ in page.steps][:3] == ["image", "ink axis", "paper removed"]
    digit = Page.mnist(page.digit)
    assert digit.digit is page.digit and digit.count == 1 and digit.row is None and digit.steps == []


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DigitrecError, match="no such file") as excinfo:
        to_mnist(tmp_path / "nowhere.png")
    assert excinfo.value.source == str(tmp_path / "nowhere.png")


def _number(*digits: list[Stroke], gap: float = 0.25) -> Image.Image:
    """Digits written side by side on one wide page, each in a 200 px square, ``gap`` squares apart (negative: overlapping)."""
    side, count = 200, len(digits)
    page = Image.new("RGB", (int(side * (0.5 + count + gap * (count - 1))), side), "white")
    for i, strokes in enumerate(digits):
        _pen(page, strokes, "black", 12, side * (0.25 + i * (1 + gap)), 0, side)
    return page


def first_options(image: Image.Image) -> list[np.ndarray]:
    """Each group of ink in the image, left to right, read as one digit."""
    return [group[0][0] for group in Page.of(image).options]


def test_a_numbers_digits_come_left_to_right() -> None:
    crops = first_options(_number(SEVEN, ZERO, ONE, FIVE))
    assert len(crops) == 4
    for crop, strokes in zip(crops, (SEVEN, ZERO, ONE, FIVE), strict=True):
        assert crop.shape == (28, 28) and crop.dtype == np.uint8
        assert close(crop, to_mnist(drawing(strokes)), 6.0)


def test_a_digit_in_two_pieces_stays_one_digit() -> None:
    crops = first_options(drawing(FIVE))
    assert len(crops) == 1
    assert close(crops[0], to_mnist(drawing(FIVE)), 1.0)


def test_touching_digits_are_one_group_offered_as_two() -> None:
    wide_zero = [[(0.5 + 0.25 * math.sin(a / 12 * math.pi), 0.5 - 0.3 * math.cos(a / 12 * math.pi)) for a in range(25)]]
    touching = _number(wide_zero, wide_zero, gap=-0.5)  # the second 0's left side crosses the first's right side
    page = Page.of(touching)
    assert page.count == 1 and [len(option) for option in page.options[0]][:2] == [1, 2]
    assert Page.of(drawing(wide_zero)).count == 1


def test_every_realworld_image_converts_to_a_digit() -> None:
    if not REALWORLD.is_dir():
        pytest.skip(f"real-world development set not found at {REALWORLD.resolve()}")
    paths = sorted(p for p in REALWORLD.iterdir() if p.suffix.lower() in {".png", ".jpg"})
    assert paths
    for path in paths:
        digit = to_mnist(path)
        assert digit.shape == (28, 28) and digit.dtype == np.uint8, path.name
        assert digit.max() == 255 and max(bounding_box(digit)) == 20, path.name


def test_an_opaque_dark_box_in_a_transparent_frame_reads_as_light_ink_on_dark(seven: np.ndarray) -> None:
    image = Image.new("RGBA", (260, 260), (0, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((30, 30, 229, 229), fill=(25, 25, 35, 255))
    _pen(image, SEVEN, (235, 235, 235, 255), 12, 30, 30, 200)
    assert close(to_mnist(image), seven, 6.0)


def _scan(strokes: list[Stroke], side: int, square: bool = True) -> Image.Image:
    """A low-resolution scan: the digit drawn large and shrunk until its longer side is ``side`` px, filling its frame.

    ``square`` centres it on a ``side`` x ``side`` page (as scikit-learn's 8x8 digits are); otherwise the scan is cropped to the ink.
    """
    big = drawing(strokes, size=(10 * side, 10 * side), width=side * 10 // 8)
    big = big.crop(big.convert("L").point(lambda v: 255 - v).getbbox())
    size = (max(1, round(big.width * side / max(big.size))), max(1, round(big.height * side / max(big.size))))
    scan = big.resize(size, Image.Resampling.BOX)
    if not square:
        return scan
    page = Image.new("RGB", (side, side), "white")
    page.paste(scan, ((side - size[0]) // 2, (side - size[1]) // 2))
    return page


@pytest.mark.parametrize("side", [8, 12, 16])
def test_a_small_scan_filling_its_frame_reads_like_a_large_drawing(seven: np.ndarray, side: int) -> None:
    assert close(to_mnist(_scan(SEVEN, side)), seven, 25.0)
    assert Page.of(_scan(SEVEN, side)).count == 1


def test_a_blurred_upscaled_scan_keeps_its_faint_strokes_whole() -> None:
    scan = _scan(ZERO, 8).resize((32, 32), Image.Resampling.BICUBIC)  # scikit-learn's digits at 32x32 look like this
    digit = to_mnist(scan)
    assert Page.of(scan).count == 1
    # the ring is closed: its inside is a hole, not joined to the background
    paper_regions, _ = cv2.connectedComponents((digit <= 64).astype(np.uint8), connectivity=4)
    assert paper_regions - 1 == 2  # label 0 counts the ink


def test_narrow_ones_cropped_to_their_ink_are_ink_not_paper_grain() -> None:
    """MNIST's own 1s cropped to their ink and shrunk to 16 px high: hardly any paper, some 3-4 px wide with none to measure."""
    from conftest import SHARED_MNIST

    from digitrec import data

    if not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST not found in {SHARED_MNIST}")
    test = data.load_mnist("test", SHARED_MNIST, download=False)
    read = []
    for digit in test.images[test.labels == 1]:
        rows, cols = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
        crop = Image.fromarray(255 - digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
        read.append(to_mnist(crop.resize((max(1, round(crop.width * 16 / crop.height)), 16), Image.Resampling.BOX)))
    assert all(bounding_box(digit)[0] == 20 for digit in read[:100])
    assert sum(not digit.any() for digit in read) <= 1  # of 1,135 (3 when the grain was measured on a few pixels)


def test_a_lone_speck_on_a_blank_page_is_no_digit_but_a_small_digit_is_read() -> None:
    page = np.full((140, 140), 245, np.uint8)
    page[60:64, 40:44] = 30  # dust, or a full stop: 4 px
    assert not to_mnist(page).any()
    page[50:62, 90:92] = 30  # a 1 only 12 px high, a twelfth of the page
    assert to_mnist(page).any()
