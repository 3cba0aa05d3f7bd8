"""Specification of ``digitrec.data``: every source of digits, and how bad input is reported.

Every refusal is a :class:`DigitrecError` whose text is one line naming the file, the place in
it and the reason, because that line is all a user of the CLI or the API gets to see.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from digitrec import data
from digitrec.errors import DigitrecError

REAL_MNIST = Path(__file__).resolve().parents[1].parent / "shared/data/mnist"
SMALL_STEM = "t10k-labels-idx1-ubyte"  # the smallest real MNIST file (4.5 kB compressed)
TIMEOUT = 5.0  # seconds; bounds every HTTP request the tests make


# --- helpers -------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray, magic: int | None = None, dims: tuple[int, ...] | None = None) -> bytes:
    """An uncompressed IDX file of unsigned bytes; ``magic`` and ``dims`` override the honest header."""
    array = np.asarray(array, dtype=np.uint8)
    magic = 0x0800 + array.ndim if magic is None else magic
    dims = array.shape if dims is None else dims
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    return header + array.tobytes()


def refusal(excinfo: pytest.ExceptionInfo[DigitrecError], *fragments: str) -> str:
    """The error's text, checked to be one line that contains every fragment."""
    message = str(excinfo.value)
    assert "\n" not in message and "\r" not in message, f"not one line: {message!r}"
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from {message!r}"
    return message


def synthetic_images(count: int) -> np.ndarray:
    rng = np.random.default_rng(count)
    return rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)


def kaggle_header(labelled: bool = True) -> str:
    return ",".join((["label"] if labelled else []) + data.PIXEL_COLUMNS)


def kaggle_row(pixels: list[int] | np.ndarray, label: int | None = None) -> str:
    return ",".join(([str(label)] if label is not None else []) + [str(int(p)) for p in pixels])


def write_kaggle(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def draw_digit(path: Path, stroke: list[tuple[int, int]]) -> None:
    """A dark pen stroke on light paper, 100x80, the way a photo or a scan of a digit looks."""
    image = Image.new("L", (100, 80), 235)
    ImageDraw.Draw(image).line(stroke, fill=20, width=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def gunzipped_sha256(payload: bytes) -> str:
    return hashlib.sha256(gzip.decompress(payload)).hexdigest()


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A private cache per test, no data folder from the environment, and no way to reach the internet."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DIGITREC_DATA", raising=False)
    # Should any test fall back to downloading, it gets a refused connection instead of the real mirrors.
    monkeypatch.setenv("DIGITREC_MNIST_MIRRORS", "http://127.0.0.1:1/")


@pytest.fixture
def real_mnist() -> Path:
    if not (REAL_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"the real MNIST files are not in {REAL_MNIST}; download and cache tests need them")
    return REAL_MNIST


@pytest.fixture
def synthetic_mnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, np.ndarray, np.ndarray]:
    """A folder holding a 3-image MNIST test set, with MNIST's checksums swapped for its own.

    load_mnist then runs its real pipeline (find, gunzip, parse, check, verify, cache) on tiny data.
    """
    root = tmp_path / "mnist"
    root.mkdir()
    images, labels = synthetic_images(3), np.array([7, 2, 1], dtype=np.uint8)
    for stem, array in (("t10k-images-idx3-ubyte", images), ("t10k-labels-idx1-ubyte", labels)):
        content = idx_bytes(array)
        (root / stem).write_bytes(content)
        monkeypatch.setitem(data.MNIST_FILES, stem, (len(content), hashlib.sha256(content).hexdigest()))
    return root, images, labels


class MirrorServer:
    """Local HTTP mirrors of MNIST: ``/good/``, ``/missing/`` (404), ``/damaged-gzip/``,
    ``/wrong-content/`` and ``/truncated/`` (the connection drops half-way through the body)."""

    def __init__(self, files: Path):
        self.files = files
        self.requests: list[str] = []
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                mirror.requests.append(self.path)
                kind, _, name = self.path.strip("/").partition("/")
                source = mirror.files / name
                if kind == "missing" or not source.is_file():
                    self.send_error(404)
                    return
                payload = source.read_bytes()
                if kind == "damaged-gzip":
                    middle = len(payload) // 2
                    payload = payload[:middle] + bytes(b ^ 0xFF for b in payload[middle : middle + 64]) + payload[middle + 64 :]
                elif kind == "wrong-content":
                    payload = gzip.compress(b"\0" * len(gzip.decompress(payload)))
                self.send_response(200)
                self.send_header("Content-Type", "application/gzip")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if kind == "truncated":
                    self.wfile.write(payload[: len(payload) // 2])
                    self.close_connection = True
                else:
                    self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:  # keep pytest's output clean
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def mirror(self, kind: str) -> str:
        return f"{self.base}/{kind}/"

    def requested_files(self) -> list[str]:
        return [path.rsplit("/", 1)[-1] for path in self.requests]


@pytest.fixture
def mirrors(real_mnist: Path) -> Iterator[MirrorServer]:
    server = MirrorServer(real_mnist)
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
        server.thread.join(timeout=TIMEOUT)


@pytest.fixture
def closed_port_mirror() -> str:
    """A mirror URL on which nothing listens: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


# --- 1. IDX files ----------------------------------------------------------------------------


def test_parse_idx_returns_the_array_its_header_describes() -> None:
    images = synthetic_images(3)

    parsed = data.parse_idx(idx_bytes(images), "images.idx")

    assert parsed.shape == (3, 28, 28) and parsed.dtype == np.uint8
    assert np.array_equal(parsed, images)


@pytest.mark.parametrize("compressed", [True, False], ids=["gzip", "raw"])
def test_mnist_folder_loads_whether_idx_files_are_gzipped_or_raw(
    synthetic_mnist: tuple[Path, np.ndarray, np.ndarray], compressed: bool
) -> None:
    root, images, _ = synthetic_mnist
    if compressed:
        for raw in list(root.iterdir()):
            (root / f"{raw.name}.gz").write_bytes(gzip.compress(raw.read_bytes()))
            raw.unlink()

    digits = data.load_mnist("test", data_dir=root, download=False)

    assert digits.images.shape == (3, 28, 28) and digits.images.dtype == np.uint8
    assert np.array_equal(digits.images, images)
    assert digits.labels.dtype == np.int64
    assert digits.labels.tolist() == [7, 2, 1]
    assert digits.name == "mnist-test"


IMAGES, LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
BAD_IDX_FILES = {
    # id: (file stem, bytes, fragments of the message, place)
    "bad-magic-number": (IMAGES, idx_bytes(synthetic_images(3), magic=0x00000903), ("bad magic number", "0x00000903"), "byte 0"),
    "data-shorter-than-header-says": (
        IMAGES,
        idx_bytes(synthetic_images(2), dims=(3, 28, 28)),
        ("1568 bytes", "2352", "shorter"),
        f"byte {16 + 2 * 784}",
    ),
    "header-cut-short": (IMAGES, idx_bytes(synthetic_images(1))[:10], ("10 bytes", "16-byte header"), "byte 4"),
    "bytes-after-the-data": (IMAGES, idx_bytes(synthetic_images(3)) + bytes(5), ("5 bytes follow",), f"byte {16 + 3 * 784}"),
    "32x32-images": (IMAGES, idx_bytes(np.zeros((3, 32, 32))), ("wrong image size 32x32", "28x28"), "byte 8"),
    "label-outside-0-9": (LABELS, idx_bytes(np.array([7, 12, 1])), ("label 12", "item 1", "0-9"), "byte 9"),
}


@pytest.mark.parametrize("stem, content, reason, place", BAD_IDX_FILES.values(), ids=BAD_IDX_FILES.keys())
def test_malformed_idx_file_is_refused_naming_file_byte_offset_and_reason(
    synthetic_mnist: tuple[Path, np.ndarray, np.ndarray], stem: str, content: bytes, reason: tuple[str, ...], place: str
) -> None:
    root, _, _ = synthetic_mnist
    path = root / stem
    path.write_bytes(content)

    with pytest.raises(DigitrecError) as excinfo:
        data.load_mnist("test", data_dir=root, download=False)

    refusal(excinfo, str(path), place, *reason)
    assert excinfo.value.source == str(path)
    assert excinfo.value.place == place


def _truncated_gzip(content: bytes) -> bytes:
    return gzip.compress(content)[:-40]


def _gzip_with_wrong_crc(content: bytes) -> bytes:
    packed = bytearray(gzip.compress(content))
    packed[-8] ^= 0xFF  # first byte of the CRC-32 trailer
    return bytes(packed)


@pytest.mark.parametrize("damage", [_truncated_gzip, _gzip_with_wrong_crc], ids=["truncated", "corrupt-crc"])
def test_damaged_gzip_file_is_refused_naming_the_file(synthetic_mnist: tuple[Path, np.ndarray, np.ndarray], damage) -> None:
    root, images, _ = synthetic_mnist
    (root / "t10k-images-idx3-ubyte").unlink()
    path = root / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(damage(idx_bytes(images)))

    with pytest.raises(DigitrecError) as excinfo:
        data.load_mnist("test", data_dir=root, download=False)

    refusal(excinfo, str(path), "gzip")


def test_damaged_gzip_file_refusal_says_at_which_byte(synthetic_mnist: tuple[Path, np.ndarray, np.ndarray]) -> None:
    root, images, _ = synthetic_mnist
    (root / "t10k-images-idx3-ubyte").unlink()
    (root / "t10k-images-idx3-ubyte.gz").write_bytes(_truncated_gzip(idx_bytes(images)))

    with pytest.raises(DigitrecError) as excinfo:
        data.load_mnist("test", data_dir=root, download=False)

    assert excinfo.value.place is not None and excinfo.value.place.startswith("byte ")


def test_well_formed_files_that_are_not_mnist_are_refused_by_checksum(tmp_path: Path) -> None:
    root = tmp_path / "not-mnist"
    root.mkdir()
    for part in ("train", "t10k"):
        (root / f"{part}-images-idx3-ubyte").write_bytes(idx_bytes(synthetic_images(3)))
        (root / f"{part}-labels-idx1-ubyte").write_bytes(idx_bytes(np.array([0, 1, 2])))

    with pytest.raises(DigitrecError) as excinfo:
        data.load_mnist(data_dir=root)

    refusal(excinfo, str(root / "train-images-idx3-ubyte"), "checksum")


# --- 2. Kaggle CSV -------------------------------------------------------------------------


def test_kaggle_train_csv_loads_labels_and_pixels_row_by_row(tmp_path: Path) -> None:
    first, second = np.arange(784) % 256, (np.arange(784) * 7) % 256
    path = write_kaggle(tmp_path / "train.csv", [kaggle_header(), kaggle_row(first, 4), kaggle_row(second, 9)])

    digits = data.load_kaggle_csv(path)

    assert digits.images.shape == (2, 28, 28) and digits.images.dtype == np.uint8
    assert digits.images[0].flatten().tolist() == first.tolist()
    assert digits.images[1].flatten().tolist() == second.tolist()
    assert digits.images[0, 1, 0] == 28  # pixel28 is row 1, column 0
    assert digits.labels.dtype == np.int64 and digits.labels.tolist() == [4, 9]
    assert digits.labelled


def test_kaggle_test_csv_without_label_column_loads_with_unknown_labels(tmp_path: Path) -> None:
    pixels = np.full(784, 255)
    path = write_kaggle(tmp_path / "test.csv", [kaggle_header(labelled=False), kaggle_row(pixels), kaggle_row(pixels * 0)])

    digits = data.load_kaggle_csv(path)

    assert digits.images.shape == (2, 28, 28)
    assert int(digits.images[0].min()) == 255 and int(digits.images[1].max()) == 0
    assert digits.labels.tolist() == [-1, -1]
    assert not digits.labelled


def test_kaggle_short_row_is_refused_naming_its_line(tmp_path: Path) -> None:
    zeros = np.zeros(784, dtype=int)
    path = write_kaggle(tmp_path / "train.csv", [kaggle_header(), kaggle_row(zeros, 1), kaggle_row(zeros[:700], 2)])

    with pytest.raises(DigitrecError) as excinfo:
        data.load_kaggle_csv(path)

    refusal(excinfo, str(path), "line 3", "701 values", "785")


def test_kaggle_non_numeric_cell_is_refused_naming_line_and_column(tmp_path: Path) -> None:
    cells = [str(v) for v in range(784)]
    cells[5] = "abc"
    path = write_kaggle(tmp_path / "train.csv", [kaggle_header(), "3," + ",".join(cells)])

    with pytest.raises(DigitrecError) as excinfo:
        data.load_kaggle_csv(path)

    refusal(excinfo, str(path), "line 2", "column pixel5", "'abc'", "not a whole number")


def test_kaggle_pixel_above_255_is_refused_naming_value_and_column(tmp_path: Path) -> None:
    zeros = np.zeros(784, dtype=int)
    bad = zeros.copy()
    bad[17] = 300
    path = write_kaggle(tmp_path / "train.csv", [kaggle_header(), kaggle_row(zeros, 0), kaggle_row(bad, 1)])

    with pytest.raises(DigitrecError) as excinfo:
        data.load_kaggle_csv(path)

    refusal(excinfo, str(path), "300", "0-255", "line 3", "column pixel17")


def test_kaggle_label_outside_0_to_9_is_refused_naming_its_line(tmp_path: Path) -> None:
    zeros = np.zeros(784, dtype=int)
    path = write_kaggle(tmp_path / "train.csv", [kaggle_header(), kaggle_row(zeros, 5), kaggle_row(zeros, 10)])

    with pytest.raises(DigitrecError) as excinfo:
        data.load_kaggle_csv(path)

    refusal(excinfo, str(path), "label 10", "0-9", "line 3", "column label")


def test_kaggle_csv_without_header_is_refused_at_line_1(tmp_path: Path) -> None:
    zeros = np.zeros(784, dtype=int)
    path = write_kaggle(tmp_path / "train.csv", [kaggle_row(zeros, 5), kaggle_row(zeros, 6)])

    with pytest.raises(DigitrecError) as excinfo:
        data.load_kaggle_csv(path)

    refusal(excinfo, str(path), "line 1", "missing header")


def test_kaggle_header_with_a_wrong_column_name_is_refused_naming_it(tmp_path: Path) -> None:
    header = kaggle_header().replace("pixel5,", "pixl5,")
    path = write_kaggle(tmp_path / "train.csv", [header, kaggle_row(np.zeros(784, dtype=int), 5)])

    with pytest.raises(DigitrecError) as excinfo:
        data.load_kaggle_csv(path)

    refusal(excinfo, str(path), "line 1", "'pixl5'", "'pixel5'")


def test_kaggle_csv_with_a_header_but_no_rows_is_refused(tmp_path: Path) -> None:
    path = write_kaggle(tmp_path / "train.csv", [kaggle_header()])

    with pytest.raises(DigitrecError) as excinfo:
        data.load_kaggle_csv(path)

    refusal(excinfo, str(path), "no data rows")


def test_kaggle_error_line_number_counts_blank_lines_in_the_file(tmp_path: Path) -> None:
    zeros = np.zeros(784, dtype=int)
    bad = zeros.copy()
    bad[17] = 300
    # line 1 header, line 2 a good row, line 3 blank, line 4 the bad row
    path = write_kaggle(tmp_path / "train.csv", [kaggle_header(), kaggle_row(zeros, 0), "", kaggle_row(bad, 1)])

    with pytest.raises(DigitrecError) as excinfo:
        data.load_kaggle_csv(path)

    refusal(excinfo, "line 4, column pixel17")


def test_kaggle_csv_accepts_quoted_numbers_and_whole_numbers_written_as_floats(tmp_path: Path) -> None:
    pixels = np.arange(784) % 256
    quoted = ",".join(['"7"'] + [f'"{p}"' for p in pixels])
    as_floats = ",".join(["3.0"] + [f"{p}.0" for p in pixels])
    mixed = ",".join(['"0.0"'] + [str(p) if p % 2 else f"{p}.0" for p in pixels])
    header = ",".join(f'"{name}"' for name in kaggle_header().split(","))  # quoted names, as some exporters write them
    path = write_kaggle(tmp_path / "train.csv", [header, quoted, as_floats, mixed])

    digits = data.load_kaggle_csv(path)

    assert digits.labels.dtype == np.int64 and digits.labels.tolist() == [7, 3, 0]
    assert digits.images.dtype == np.uint8
    for image in digits.images:
        assert image.flatten().tolist() == pixels.tolist()


KAGGLE_BAD_CELLS = {
    # id: (cell, column it is put in, fragments of the message)
    "half-pixel": ("2.5", "pixel9", ("'2.5' is not a whole number",)),
    "half-label": ("2.5", "label", ("'2.5' is not a whole number",)),
    "word": ("x", "pixel9", ("'x' is not a whole number",)),
    "nan": ("nan", "pixel9", ("'nan' is not a whole number",)),
    "float-pixel-above-255": ("300.0", "pixel9", ("pixel value 300.0", "outside 0-255")),
    "quoted-pixel-above-255": ('"256"', "pixel9", ("pixel value 256", "outside 0-255")),
    "float-label-below-0": ("-1.0", "label", ("label -1.0", "outside 0-9")),
}


@pytest.mark.parametrize("cell, column, reason", KAGGLE_BAD_CELLS.values(), ids=KAGGLE_BAD_CELLS.keys())
def test_kaggle_cell_that_is_not_a_whole_number_in_range_is_refused_where_it_is_even_among_float_cells(
    tmp_path: Path, cell: str, column: str, reason: tuple[str, ...]
) -> None:
    floats = ["1.0"] + ["0.0"] * 784  # whole numbers written as floats: acceptable, so the bad cell is the first error
    bad = list(floats)
    bad[0 if column == "label" else 1 + int(column.removeprefix("pixel"))] = cell
    path = write_kaggle(tmp_path / "train.csv", [kaggle_header(), ",".join(floats), ",".join(bad)])

    with pytest.raises(DigitrecError) as excinfo:
        data.load_kaggle_csv(path)

    refusal(excinfo, str(path), f"line 3, column {column}", *reason)


def test_kaggle_refusal_echoes_at_most_40_characters_of_a_cell_or_header_name(tmp_path: Path) -> None:
    zeros = np.zeros(784, dtype=int)
    long_cell = write_kaggle(tmp_path / "cell.csv", [kaggle_header(), kaggle_row(zeros, 1).replace(",0", "," + "9" * 1000 + "x", 1)])
    long_name = write_kaggle(tmp_path / "name.csv", [kaggle_header().replace("pixel3,", "p" * 1000 + ","), kaggle_row(zeros, 1)])

    for path, place in ((long_cell, "line 2, column pixel0"), (long_name, "line 1, column 5")):
        with pytest.raises(DigitrecError) as excinfo:
            data.load_kaggle_csv(path)

        message = refusal(excinfo, str(path), place)
        assert len(message) < len(str(path)) + 120, message


@pytest.mark.parametrize("separator", [";", "\t"], ids=["semicolon", "tab"])
def test_kaggle_file_separated_by_another_character_is_refused_naming_the_separator_in_one_short_line(
    tmp_path: Path, separator: str
) -> None:
    header = kaggle_header().replace(",", separator)
    path = write_kaggle(tmp_path / "train.csv", [header, kaggle_row(np.zeros(784, dtype=int), 5).replace(",", separator)])

    with pytest.raises(DigitrecError) as excinfo:
        data.load_kaggle_csv(path)

    message = refusal(excinfo, str(path), "line 1", f"columns are separated by {separator!r}, not commas")
    assert len(message) < len(str(path)) + 120, message


@pytest.mark.parametrize("position", [785, 2], ids=["last", "second"])
def test_kaggle_header_with_the_label_column_elsewhere_than_first_is_refused_as_misplaced(tmp_path: Path, position: int) -> None:
    names = list(data.PIXEL_COLUMNS)
    names.insert(position - 1, "label")
    path = write_kaggle(tmp_path / "train.csv", [",".join(names), kaggle_row(np.zeros(785, dtype=int))])

    with pytest.raises(DigitrecError) as excinfo:
        data.load_kaggle_csv(path)

    refusal(excinfo, str(path), f"line 1, column {position}", "label column is misplaced", "must be the first column", "label,pixel0,")


# --- 3. Keras npz --------------------------------------------------------------------------

UNPICKLED: list[str] = []


def _record_unpickling() -> str:
    UNPICKLED.append("unpickled")
    return "trap"


class PickleTrap:
    """Unpickling this object leaves a trace in UNPICKLED."""

    def __reduce__(self):
        return (_record_unpickling, ())


def test_keras_npz_loads_its_train_and_test_parts(tmp_path: Path) -> None:
    x_train, x_test = synthetic_images(3), synthetic_images(2)
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=x_train, y_train=np.array([1, 2, 3], np.uint8), x_test=x_test, y_test=np.array([9, 0], np.uint8))

    train, test = data.load_npz(path), data.load_npz(path, "test")

    assert np.array_equal(train.images, x_train) and train.labels.tolist() == [1, 2, 3]
    assert np.array_equal(test.images, x_test) and test.labels.tolist() == [9, 0]
    assert train.labels.dtype == np.int64
    assert train.checksum == test.checksum == hashlib.sha256(path.read_bytes()).hexdigest()


def test_npz_holding_a_pickled_object_array_is_refused_without_unpickling(tmp_path: Path) -> None:
    path = tmp_path / "evil.npz"
    trap = np.empty(1, dtype=object)
    trap[0] = PickleTrap()
    np.savez(path, x_train=trap, y_train=np.array([1], np.uint8))
    UNPICKLED.clear()

    with pytest.raises(DigitrecError) as excinfo:
        data.load_npz(path)

    refusal(excinfo, str(path))
    assert UNPICKLED == []


@pytest.mark.parametrize(("field", "value"), [(8, 1), (10, 99)], ids=["encrypted", "unknown-compression"])
def test_npz_whose_arrays_are_encrypted_or_compressed_unknowably_is_refused_in_one_line(tmp_path: Path, field: int,
                                                                                      value: int) -> None:
    """The zip's central directory says the first array is encrypted (flag bit 0) or packed by a method zipfile lacks."""
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=synthetic_images(2), y_train=np.array([1, 2], np.uint8))
    blob = bytearray(path.read_bytes())
    blob[blob.find(b"PK\x01\x02") + field] = value  # the first member's general-purpose flags, or compression method
    path.write_bytes(bytes(blob))

    with pytest.raises(DigitrecError) as excinfo:
        data.load_npz(path)

    refusal(excinfo, str(path), "not a readable .npz archive")


def test_file_that_is_not_a_zip_archive_is_refused_as_not_an_npz_without_talk_of_pickles(tmp_path: Path) -> None:
    path = tmp_path / "mnist.npz"
    path.write_text("this is not a zip archive\n")

    with pytest.raises(DigitrecError) as excinfo:
        data.load_npz(path)

    message = refusal(excinfo, str(path), "not an .npz archive (a zip of .npy arrays)")
    assert "pickle" not in message and "kaggle:" not in message


@pytest.mark.parametrize("spec_of", [lambda p: f"npz:{p}", str], ids=["npz:PATH", "bare-.npz-path"])
def test_csv_given_as_npz_is_refused_suggesting_kaggle(tmp_path: Path, spec_of) -> None:
    path = write_kaggle(tmp_path / "digits.npz", [kaggle_header(), kaggle_row(np.zeros(784, dtype=int), 5)])

    with pytest.raises(DigitrecError) as excinfo:
        data.load(spec_of(path))

    message = refusal(excinfo, str(path), "not an .npz archive", "kaggle:PATH")
    assert "pickle" not in message


def test_npz_holding_a_pickled_object_array_is_refused_without_mentioning_allow_pickle(tmp_path: Path) -> None:
    path = tmp_path / "objects.npz"
    np.savez(path, x_train=np.array([{"a": 1}], dtype=object), y_train=np.array([1], np.uint8))

    with pytest.raises(DigitrecError) as excinfo:
        data.load_npz(path)

    message = refusal(excinfo, str(path), "Python objects", "never unpickles")
    assert "allow_pickle" not in message


def test_single_array_npy_file_is_refused_as_npz(tmp_path: Path) -> None:
    path = tmp_path / "mnist.npy"
    np.save(path, synthetic_images(2))

    with pytest.raises(DigitrecError) as excinfo:
        data.load_npz(path)

    refusal(excinfo, str(path), "a single array", "not an .npz archive")


# --- 4. image folders ----------------------------------------------------------------------


def test_image_folder_loads_as_mnist_style_white_ink_on_black(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    draw_digit(root / "3" / "a.png", [(30, 15), (65, 20), (40, 40), (65, 55), (30, 65)])
    draw_digit(root / "7" / "b.png", [(30, 15), (70, 15), (45, 68)])

    digits = data.load_image_folder(root)

    assert digits.images.shape == (2, 28, 28) and digits.images.dtype == np.uint8
    assert digits.labels.tolist() == [3, 7]
    for image in digits.images:
        assert int(image.max()) > 200  # the ink is white
        corners = image[[0, 0, -1, -1], [0, -1, 0, -1]]
        assert corners.tolist() == [0, 0, 0, 0]  # the paper is black
        assert (image == 0).mean() > 0.5  # and most of the field is paper


def test_empty_image_folder_is_refused_naming_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()

    with pytest.raises(DigitrecError) as excinfo:
        data.load_image_folder(root)

    refusal(excinfo, str(root), "no images")


# --- 5. load(spec) -------------------------------------------------------------------------


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, Path]:
    """One small source of each kind: a Kaggle CSV of 2 rows, an npz of 3 images, a folder of 1."""
    csv = write_kaggle(tmp_path / "train.csv", [kaggle_header(), *[kaggle_row(np.zeros(784, dtype=int), d) for d in (1, 2)]])
    npz = tmp_path / "digits.npz"
    np.savez(npz, x_train=synthetic_images(3), y_train=np.array([1, 2, 3], np.uint8))
    folder = tmp_path / "folder"
    draw_digit(folder / "4" / "four.png", [(60, 10), (30, 50), (75, 50)])
    return {"kaggle": csv, "npz": npz, "folder": folder}


@pytest.mark.parametrize("kind, count", [("kaggle", 2), ("npz", 3), ("folder", 1)])
@pytest.mark.parametrize("prefixed", [True, False], ids=["kind:PATH", "bare-path"])
def test_load_dispatches_on_spec_prefix_or_path_kind(sources: dict[str, Path], kind: str, count: int, prefixed: bool) -> None:
    spec = f"{kind}:{sources[kind]}" if prefixed else str(sources[kind])

    digits = data.load(spec)

    assert len(digits) == count
    assert digits.images.shape == (count, 28, 28)


def test_load_refuses_an_unknown_kind_of_source(sources: dict[str, Path]) -> None:
    spec = f"parquet:{sources['kaggle']}"

    with pytest.raises(DigitrecError) as excinfo:
        data.load(spec)

    refusal(excinfo, spec, "unknown data source", "npz:PATH", "kaggle:PATH", "folder:DIR")


def test_load_refuses_a_bare_path_of_unknown_kind(tmp_path: Path) -> None:
    path = tmp_path / "digits.txt"
    path.write_text("1,2,3\n")

    with pytest.raises(DigitrecError) as excinfo:
        data.load(str(path))

    refusal(excinfo, str(path), "unknown data source")


@pytest.mark.parametrize("spec_of", [lambda p: f"npz:{p}", lambda p: f"kaggle:{p}", str], ids=["npz:PATH", "kaggle:PATH", "bare"])
def test_load_refuses_a_missing_file_naming_it(tmp_path: Path, spec_of) -> None:
    missing = tmp_path / "nowhere" / "digits.csv"

    with pytest.raises(DigitrecError) as excinfo:
        data.load(spec_of(missing))

    refusal(excinfo, str(missing), "no such file")


# --- 6. stratified_split -------------------------------------------------------------------


@pytest.fixture
def unbalanced_labels() -> np.ndarray:
    """Class c has 11 + 7c members (11 ... 74), in shuffled order."""
    labels = np.concatenate([np.full(11 + 7 * c, c) for c in range(10)])
    return np.random.default_rng(123).permutation(labels)


def test_split_with_the_same_seed_is_reproducible(unbalanced_labels: np.ndarray) -> None:
    first = data.stratified_split(unbalanced_labels, 0.2, seed=7)
    second = data.stratified_split(unbalanced_labels, 0.2, seed=7)

    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])


def test_split_with_another_seed_holds_out_other_images(unbalanced_labels: np.ndarray) -> None:
    _, validation_a = data.stratified_split(unbalanced_labels, 0.2, seed=7)
    _, validation_b = data.stratified_split(unbalanced_labels, 0.2, seed=8)

    assert not np.array_equal(validation_a, validation_b)


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.35])
def test_split_holds_out_the_fraction_of_every_class_within_one_image(unbalanced_labels: np.ndarray, fraction: float) -> None:
    _, validation = data.stratified_split(unbalanced_labels, fraction, seed=0)

    held_out = np.bincount(unbalanced_labels[validation], minlength=10)
    totals = np.bincount(unbalanced_labels, minlength=10)
    for digit in range(10):
        assert abs(held_out[digit] - fraction * totals[digit]) <= 1, f"class {digit}"


def test_the_last_split_holds_out_the_end_as_keras_validation_split_does(unbalanced_labels: np.ndarray) -> None:
    train, validation = data.holdout_split(unbalanced_labels, 0.1, seed=3, how="last")
    split_at = int(len(unbalanced_labels) * (1 - 0.1))  # Keras: x[:split_at] trains, x[split_at:] validates
    assert train.tolist() == list(range(split_at)) and validation.tolist() == list(range(split_at, len(unbalanced_labels)))
    assert data.holdout_split(unbalanced_labels, 0.1, seed=4, how="last")[1].tolist() == validation.tolist()  # no seed in it


def test_kaggle_mnist_is_kaggles_train_csv_rebuilt_from_mnist_with_mnists_labelled_test(mnist_dir: Path) -> None:
    train = data.load("kaggle-mnist", "train", mnist_dir)
    mnist = data.load_mnist("train", mnist_dir)
    assert train.name == "train.csv" and len(train) == 42_000  # through the CSV reader, as many digits as Kaggle's
    assert np.array_equal(train.images, mnist.images[:42_000]) and np.array_equal(train.labels, mnist.labels[:42_000])
    kaggle_test = data.load_kaggle_csv(data.kaggle_from_mnist(mnist_dir) / "test.csv")
    assert len(kaggle_test) == 10_000 and not kaggle_test.labelled
    assert data.load("kaggle-mnist", "test", mnist_dir).name == "mnist-test"


def test_split_parts_are_disjoint_and_cover_every_image(unbalanced_labels: np.ndarray) -> None:
    train, validation = data.stratified_split(unbalanced_labels, 0.2, seed=3)

    assert set(train.tolist()).isdisjoint(validation.tolist())
    assert sorted(train.tolist() + validation.tolist()) == list(range(len(unbalanced_labels)))


# --- 7. download -----------------------------------------------------------------------------


def test_download_falls_back_to_the_next_mirror_after_a_404(mirrors: MirrorServer, tmp_path: Path) -> None:
    root = tmp_path / "mnist"

    path = data.download_mnist_file(SMALL_STEM, root, [mirrors.mirror("missing"), mirrors.mirror("good")], timeout=TIMEOUT)

    assert path == root / f"{SMALL_STEM}.gz"
    assert path.read_bytes() == (mirrors.files / f"{SMALL_STEM}.gz").read_bytes()
    assert gunzipped_sha256(path.read_bytes()) == data.MNIST_FILES[SMALL_STEM][1]
    assert mirrors.requests == [f"/missing/{SMALL_STEM}.gz", f"/good/{SMALL_STEM}.gz"]


@pytest.mark.parametrize("bad_mirror", ["damaged-gzip", "wrong-content"])
def test_download_skips_a_mirror_serving_corrupted_bytes(mirrors: MirrorServer, tmp_path: Path, bad_mirror: str) -> None:
    root = tmp_path / "mnist"

    path = data.download_mnist_file(SMALL_STEM, root, [mirrors.mirror(bad_mirror), mirrors.mirror("good")], timeout=TIMEOUT)

    assert gunzipped_sha256(path.read_bytes()) == data.MNIST_FILES[SMALL_STEM][1]
    assert sorted(p.name for p in root.iterdir()) == [f"{SMALL_STEM}.gz"]


def test_download_failing_on_every_mirror_says_where_to_put_the_files_and_leaves_nothing_behind(
    mirrors: MirrorServer, closed_port_mirror: str, tmp_path: Path
) -> None:
    root = tmp_path / "mnist"
    root.mkdir()
    bad = [mirrors.mirror("missing"), mirrors.mirror("damaged-gzip"), mirrors.mirror("wrong-content"), closed_port_mirror]

    with pytest.raises(DigitrecError) as excinfo:
        data.download_mnist_file(SMALL_STEM, root, bad, timeout=TIMEOUT)

    refusal(excinfo, str(root), f"{SMALL_STEM}.gz", "no mirror could supply it", "put the four MNIST files there")
    assert excinfo.value.source == str(root)
    assert list(root.iterdir()) == []  # neither the target nor a *.tmp


def test_download_moves_on_when_a_mirror_drops_the_connection_mid_file(mirrors: MirrorServer, tmp_path: Path) -> None:
    root = tmp_path / "mnist"

    path = data.download_mnist_file(SMALL_STEM, root, [mirrors.mirror("truncated"), mirrors.mirror("good")], timeout=TIMEOUT)

    assert gunzipped_sha256(path.read_bytes()) == data.MNIST_FILES[SMALL_STEM][1]


def test_load_mnist_downloads_the_missing_test_files_from_configured_mirrors(
    mirrors: MirrorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGITREC_MNIST_MIRRORS", f"{mirrors.mirror('missing')},{mirrors.mirror('good')}")
    root = tmp_path / "mnist"

    digits = data.load_mnist("test", data_dir=root, download=True)

    assert len(digits) == 10_000 and digits.images.shape == (10_000, 28, 28)
    assert sorted(p.name for p in root.iterdir()) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    assert set(mirrors.requested_files()) == {"t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}


def test_load_mnist_without_download_names_the_missing_file_and_folder(tmp_path: Path) -> None:
    root = tmp_path / "empty"

    with pytest.raises(DigitrecError) as excinfo:
        data.load_mnist("test", data_dir=root, download=False)

    refusal(excinfo, str(root), "t10k-images-idx3-ubyte.gz not found")


@pytest.mark.parametrize("how", ["data_dir", "DIGITREC_DATA"])
def test_mnist_data_dir_that_is_a_file_is_refused_at_once_without_downloading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    not_a_folder = tmp_path / "train.csv"
    not_a_folder.write_text("label,pixel0\n")
    monkeypatch.setenv("DIGITREC_MNIST_MIRRORS", "http://127.0.0.1:9/")

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(data.urllib.request, "urlopen", no_network)
    if how == "DIGITREC_DATA":
        monkeypatch.setenv("DIGITREC_DATA", str(not_a_folder))

    with pytest.raises(DigitrecError) as excinfo:
        data.load_mnist("test", data_dir=not_a_folder if how == "data_dir" else None)

    refusal(excinfo, str(not_a_folder), "is a file, not a folder")
    assert "downloading" not in capsys.readouterr().err


# --- 8. decoded cache ----------------------------------------------------------------------


def test_second_load_of_mnist_comes_from_the_decoded_cache(
    real_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = data.load_mnist("test", data_dir=real_mnist, download=False)
    cached = sorted((tmp_path / "cache" / "digitrec" / "decoded").glob("*.npy"))
    assert [p.name.split("-")[0] for p in cached] == ["t10k", "t10k"]

    def decode_again(*args: object) -> None:
        raise AssertionError("the IDX file was parsed again instead of read from the cache")

    monkeypatch.setattr(data, "parse_idx", decode_again)
    second = data.load_mnist("test", data_dir=real_mnist, download=False)

    assert np.array_equal(first.images, second.images)
    assert np.array_equal(first.labels, second.labels)
    assert first.checksum == second.checksum
