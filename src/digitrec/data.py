"""Where digits come from, turned into uint8 tensors.

Sources: MNIST's IDX files (found on disk or downloaded from mirrors, checksum-verified),
Keras' ``mnist.npz``, Kaggle "Digit Recognizer" CSVs and folders of labelled images
(``DIR/<digit>/*.png``). Every source yields a :class:`Digits`: images as ``(N, 28, 28)``
uint8 with white ink on black, as in MNIST, and int64 labels (``-1`` where unknown).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import http.client
import io
import math
import os
import re
import struct
import sys
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np

from digitrec.choices import IMAGE_SUFFIXES
from digitrec.errors import DigitrecError
from digitrec.files import atomic_write
from digitrec.mnist_format import FIELD, PIXELS

# Sizes and SHA-256 of the *uncompressed* files: mirrors recompress, the content is what counts.
MNIST_FILES: dict[str, tuple[int, str]] = {
    "train-images-idx3-ubyte": (47040016, "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "train-labels-idx1-ubyte": (60008, "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    "t10k-images-idx3-ubyte": (7840016, "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    "t10k-labels-idx1-ubyte": (10008, "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://yann.lecun.com/exdb/mnist/",
)
PARTS = {"train": "train", "test": "t10k"}


@dataclass(frozen=True)
class Digits:
    """A labelled (or unlabelled) set of 28x28 digit images."""

    images: np.ndarray  # (N, 28, 28) uint8, white ink on black
    labels: np.ndarray  # (N,) int64, -1 where unknown
    name: str  # where they came from, for reports
    checksum: str  # identifies the exact data; recorded in checkpoints

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def labelled(self) -> bool:
        return bool(len(self.labels)) and bool((self.labels >= 0).all())

    def subset(self, index: np.ndarray, name: str | None = None) -> Digits:
        return Digits(self.images[index], self.labels[index], name or self.name, self.checksum)


# --- where files live -------------------------------------------------------------------


def cache_dir() -> Path:
    """Per-user cache: ``$XDG_CACHE_HOME/digitrec`` or ``~/.cache/digitrec``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "digitrec"


def mnist_dir(data_dir: str | Path | None = None) -> Path:
    """``data_dir`` if given, else ``$DIGITREC_DATA``, else the cache's ``mnist`` folder."""
    chosen = Path(data_dir or os.environ.get("DIGITREC_DATA") or cache_dir() / "mnist").expanduser()
    if chosen.is_file():  # else nothing is found inside it and every mirror is tried before failing
        raise DigitrecError("is a file, not a folder; point --data-dir or DIGITREC_DATA at the folder of MNIST files", str(chosen))
    return chosen


# --- IDX ---------------------------------------------------------------------------------


def _gunzip_if_needed(raw: bytes, source: str) -> bytes:
    """Uncompressed bytes; a damaged gzip stream is reported with the offset where it broke."""
    if raw[:2] != b"\x1f\x8b":
        return raw
    block = 1 << 16
    parts, start = [], 0
    decoder = zlib.decompressobj(wbits=31)
    try:
        for start in range(0, len(raw), block):
            parts.append(decoder.decompress(raw[start : start + block]))
            while decoder.eof and decoder.unused_data:  # concatenated gzip members
                rest = decoder.unused_data
                decoder = zlib.decompressobj(wbits=31)
                parts.append(decoder.decompress(rest))
    except zlib.error as e:
        raise DigitrecError(f"corrupt gzip data ({e})", source, f"byte {start} (the 64 KiB block from there)") from None
    if not decoder.eof:
        raise DigitrecError("gzip data ends early: the file is truncated", source, f"byte {len(raw)}")
    return b"".join(parts)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise DigitrecError(f"cannot read file ({e.strerror or e})", str(path)) from None


def parse_idx(raw: bytes, source: str) -> np.ndarray:
    """Decode an IDX file of unsigned bytes (MNIST's format); uncompressed bytes in."""
    if len(raw) < 4:
        raise DigitrecError(f"file is {len(raw)} bytes, shorter than the 4-byte IDX header", source, "byte 0")
    magic = int.from_bytes(raw[:4], "big")
    ndim = raw[3]
    if raw[:2] != b"\0\0" or raw[2] != 0x08 or ndim not in (1, 3):
        raise DigitrecError(
            f"bad magic number 0x{magic:08X} (expected 0x00000801 for labels or 0x00000803 for images)",
            source,
            "byte 0",
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DigitrecError(f"file is {len(raw)} bytes, shorter than its {header}-byte header", source, "byte 4")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = math.prod(dims)  # Python integers: a forged header cannot overflow it
    actual = len(raw) - header
    if actual < expected:
        raise DigitrecError(
            f"data is {actual} bytes, shorter than the {expected} the header promises for shape {dims}",
            source,
            f"byte {len(raw)}",
        )
    if actual > expected:
        raise DigitrecError(f"{actual - expected} bytes follow the data the header describes", source, f"byte {header + expected}")
    return np.frombuffer(raw, np.uint8, expected, header).reshape(dims)


def _check_images(images: np.ndarray, source: str) -> None:
    if images.ndim != 3:
        raise DigitrecError(f"expected an image file (3 dimensions), found {images.ndim} dimension(s)", source, "byte 3")
    if images.shape[1:] != (FIELD, FIELD):
        h, w = images.shape[1:]
        raise DigitrecError(f"wrong image size {h}x{w}, expected {FIELD}x{FIELD}", source, "byte 8")


def _check_labels(labels: np.ndarray, source: str, offset: int = 8) -> None:
    if labels.ndim != 1:
        raise DigitrecError(f"expected a label file (1 dimension), found {labels.ndim}", source, "byte 3")
    bad = np.flatnonzero(labels > 9)
    if len(bad):
        i = int(bad[0])
        raise DigitrecError(f"label {labels[i]} of item {i} is outside 0-9", source, f"byte {offset + i}")


# --- MNIST: find, download, decode once, cache ---------------------------------------


def _find_mnist_file(root: Path, stem: str) -> Path | None:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    return None


def _mirrors() -> list[str]:
    configured = os.environ.get("DIGITREC_MNIST_MIRRORS")
    return [m.strip() for m in configured.split(",") if m.strip()] if configured else list(MIRRORS)


def download_mnist_file(stem: str, root: Path, mirrors: list[str] | None = None, timeout: float = 30.0) -> Path:
    """Fetch ``stem.gz`` from the first mirror whose content matches MNIST's checksum."""
    size, sha256 = MNIST_FILES[stem]
    failures = []
    for mirror in mirrors or _mirrors():
        url = mirror.rstrip("/") + f"/{stem}.gz"
        print(f"downloading {url}", file=sys.stderr)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                payload = response.read()
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
            failures.append(f"{url}: {getattr(e, 'reason', e)}")
            continue
        try:
            content = _gunzip_if_needed(payload, url)
        except DigitrecError as e:
            failures.append(f"{url}: {e.reason}")
            continue
        if len(content) != size or hashlib.sha256(content).hexdigest() != sha256:
            failures.append(f"{url}: content does not match MNIST's checksum")
            continue
        target = root / f"{stem}.gz"
        atomic_write(target, payload)
        return target
    raise DigitrecError(
        f"{stem}.gz is missing and no mirror could supply it ({'; '.join(failures)}); "
        f"put the four MNIST files there, or point --data-dir or DIGITREC_DATA at them",
        str(root),
    )


def _decoded_mnist_file(path: Path, stem: str) -> np.ndarray:
    """The file's decoded array, from a cache keyed by path, size and mtime when possible."""
    stat = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    cached = cache_dir() / "decoded" / f"{stem}-{key}.npy"
    if cached.is_file():
        try:
            return np.load(cached, allow_pickle=False)
        except (OSError, ValueError):
            pass  # a damaged cache entry is rebuilt below
    content = _gunzip_if_needed(_read_bytes(path), str(path))
    array = parse_idx(content, str(path))
    if "images" in stem:
        _check_images(array, str(path))
    else:
        _check_labels(array, str(path))
    size, sha256 = MNIST_FILES[stem]
    if len(content) != size or hashlib.sha256(content).hexdigest() != sha256:
        raise DigitrecError("content does not match MNIST's published checksum; the file is corrupt or not MNIST", str(path))
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    with contextlib.suppress(DigitrecError):  # a read-only cache only costs speed
        atomic_write(cached, buffer.getvalue())
    return array


def load_mnist(part: str = "train", data_dir: str | Path | None = None, download: bool = True) -> Digits:
    """MNIST's ``train`` (60,000) or ``test`` (10,000) images, downloading them if missing."""
    if part not in PARTS:
        raise DigitrecError(f"unknown MNIST part {part!r}; use 'train' or 'test'")
    root = mnist_dir(data_dir)
    arrays = []
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        stem = f"{PARTS[part]}-{kind}"
        path = _find_mnist_file(root, stem)
        if path is None:
            if not download:
                raise DigitrecError(f"{stem}.gz not found", str(root))
            path = download_mnist_file(stem, root)
        arrays.append(_decoded_mnist_file(path, stem))
    images, labels = arrays
    if len(images) != len(labels):
        raise DigitrecError(f"{len(images)} images but {len(labels)} labels", str(root))
    digest = hashlib.sha256("".join(MNIST_FILES[f"{PARTS[part]}-{k}"][1] for k in ("images-idx3-ubyte", "labels-idx1-ubyte")).encode())
    return Digits(images, labels.astype(np.int64), f"mnist-{part}", digest.hexdigest())


# --- other sources ------------------------------------------------------------------------


def _file_checksum(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(_read_bytes(path))
    return digest.hexdigest()


def _not_npz(head: bytes) -> str:
    """Why a file that is neither a zip nor an .npy is refused, with a hint when it is plainly a CSV."""
    reason = "not an .npz archive (a zip of .npy arrays)"
    first_line = head.split(b"\n", 1)[0]
    if b"\0" not in head and b"," in first_line:
        reason += "; it looks like a CSV file: load it as kaggle:PATH"
    return reason


def load_npz(path: str | Path, part: str = "train") -> Digits:
    """Keras' ``mnist.npz`` (``x_train``, ``y_train``, ``x_test``, ``y_test``); never unpickles."""
    path = Path(path)
    source = str(path)
    try:
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError as e:
        raise DigitrecError(f"cannot read file ({e.strerror or e})", source) from None
    # Sniff the format first: np.load would answer a text file with advice about allow_pickle.
    if head.startswith(b"\x93NUMPY"):
        raise DigitrecError("a single array (.npy), not an .npz archive with x_train/y_train/x_test/y_test", source)
    if not head.startswith(b"PK"):
        raise DigitrecError(_not_npz(head), source)
    try:
        with np.load(path, allow_pickle=False) as archive:
            images, labels = archive[f"x_{part}"], archive[f"y_{part}"]
    except KeyError:
        raise DigitrecError(f"no x_{part}/y_{part} arrays (expected Keras' mnist.npz layout)", source) from None
    except ValueError as e:
        if "pickle" in str(e):  # an object array: refused by NumPy before anything is unpickled
            raise DigitrecError(f"x_{part} or y_{part} holds Python objects, which digitrec never unpickles", source) from None
        raise DigitrecError(f"not a readable .npz archive ({_clip(str(e), 80)})", source) from None
    # zipfile raises RuntimeError for an encrypted member, and NotImplementedError (one) for a compression it lacks
    except (OSError, zipfile.BadZipFile, EOFError, RuntimeError) as e:
        raise DigitrecError(f"not a readable .npz archive ({_clip(str(e), 80)})", source) from None
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (FIELD, FIELD):
        raise DigitrecError(f"x_{part} has shape {images.shape} and type {images.dtype}, expected (N, {FIELD}, {FIELD}) uint8", source)
    if labels.shape != (len(images),) or labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise DigitrecError(f"y_{part} must hold {len(images)} labels in 0-9", source)
    return Digits(np.array(images), labels.astype(np.int64), f"{path.name}:{part}", _file_checksum(path))


PIXEL_COLUMNS = [f"pixel{i}" for i in range(PIXELS)]
KAGGLE_HEADER = "label,pixel0,...,pixel783"
# A number as written in a CSV cell; anything else ('nan', '0x5', '1_000') is not a pixel value.
_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
# Quoted cells are numbers too; the options are shared by the fast and tolerant parses so both split alike.
_LOADTXT = {"delimiter": ",", "ndmin": 2, "comments": None, "quotechar": '"'}


def _clip(text: str, width: int = 40) -> str:
    """Echo at most ``width`` characters of the user's input: a message is one short line."""
    return text if len(text) <= width else text[: width - 3] + "..."


def _foreign_delimiter(line: str) -> str | None:
    """Kaggle's files are comma-separated; name the separator ``line`` uses instead, if plainly another."""
    counts = {d: line.count(d) for d in ";\t| "}
    found = max(counts, key=lambda d: counts[d])
    if counts[found] <= line.count(","):
        return None
    parts = [part.strip().strip('"') for part in line.split(found)]
    looks_kaggle = sum(p == "label" or p.startswith("pixel") or p.isdigit() for p in parts) > len(parts) // 2
    return f"columns are separated by {found!r}, not commas (Kaggle's CSV format)" if looks_kaggle else None


def _kaggle_columns(header: str, source: str) -> bool:
    """Validate the header; True if the file has a label column (train.csv)."""
    if reason := _foreign_delimiter(header):
        raise DigitrecError(reason, source, "line 1")
    names = [name.strip().strip('"') for name in header.split(",")]
    if names and names[0].lstrip("-").replace(".", "", 1).isdigit():
        raise DigitrecError("missing header: the first line must be 'label,pixel0,...,pixel783' or 'pixel0,...,pixel783'", source, "line 1")
    if "label" in names[1:]:
        place = f"line 1, column {names.index('label', 1) + 1}"
        raise DigitrecError(f"the label column is misplaced: it must be the first column ({KAGGLE_HEADER})", source, place)
    labelled = names[:1] == ["label"]
    expected = (["label"] if labelled else []) + PIXEL_COLUMNS
    if names != expected:
        for i, (got, want) in enumerate(zip(names, expected, strict=False)):
            if got != want:
                raise DigitrecError(f"header has {_clip(got)!r} where {want!r} belongs", source, f"line 1, column {i + 1}")
        raise DigitrecError(f"header has {len(names)} columns, expected {len(expected)}", source, "line 1")
    return labelled


def _cell_problem(cell: str, column: str) -> str | None:
    """Why one cell is refused, or None: any value that is exactly a whole number in range ('5', '"5"', '5.0', '5e0')."""
    text = cell.strip()
    if not _NUMBER.fullmatch(text) or (value := Decimal(text)) != value.to_integral_value():  # Decimal: exact, 2.5 stays 2.5
        return f"{_clip(text)!r} is not a whole number"
    if column == "label":
        return None if 0 <= value <= 9 else f"label {_clip(text)} is outside 0-9"
    return None if 0 <= value <= 255 else f"pixel value {_clip(text)} is outside 0-255"


def _row_error(line: str, number: int, columns: list[str], source: str) -> DigitrecError:
    """Say precisely what is wrong with a row the parser refused."""
    cells = next(csv.reader([line]))
    if len(cells) != len(columns):
        hint = _foreign_delimiter(line)
        reason = f"row has {len(cells)} values, expected {len(columns)}" + (f": {hint}" if hint else "")
        return DigitrecError(reason, source, f"line {number}")
    for name, cell in zip(columns, cells, strict=True):
        if reason := _cell_problem(cell, name):
            return DigitrecError(reason, source, f"line {number}, column {name}")
    return DigitrecError("row cannot be read as whole numbers", source, f"line {number}")


def _bad_cells(table: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """Mask of the cells that are not whole numbers within their column's limit."""
    bad = (table < 0) | (table > limits)
    if table.dtype.kind == "f":
        bad |= table != np.floor(table)  # NaN fails this too, and infinity the limit
    return bad


def _rows_ok(lines: list[str], limits: np.ndarray) -> bool:
    try:
        table = np.loadtxt(lines, dtype=np.float64, **_LOADTXT)
    except (ValueError, OverflowError):
        return False
    return table.shape[1] == len(limits) and not _bad_cells(table, limits).any()


def _first_bad_row(lines: list[str], limits: np.ndarray) -> int:
    """Index of the first row NumPy cannot take: whole chunks first, so a late error costs about one more parse."""
    step = 1024
    for start in range(0, len(lines), step):
        if not _rows_ok(lines[start : start + step], limits):
            return next((i for i in range(start, min(start + step, len(lines))) if not _rows_ok(lines[i : i + 1], limits)), start)
    return 0


def _kaggle_table(lines: list[str], numbers: list[int], columns: list[str], source: str) -> np.ndarray:
    """The rows as a (rows, columns) array of checked whole numbers.

    Kaggle's own files hold plain integers, which int64 parses fastest; only when that fails is the file
    parsed again as float64, which takes whole numbers written as '5.0' (2.5 is then refused by the check).
    """
    limits = np.array([9 if name == "label" else 255 for name in columns])
    table = None
    for dtype in (np.int64, np.float64):
        with contextlib.suppress(ValueError, OverflowError):
            table = np.loadtxt(lines, dtype=dtype, **_LOADTXT)
            break
    if table is not None and table.shape[1] == len(columns):
        bad = _bad_cells(table, limits)
        if not bad.any():
            return table
        row = int(bad.argmax()) // len(columns)
    else:
        row = _first_bad_row(lines, limits)
    raise _row_error(lines[row], numbers[row], columns, source)


def load_kaggle_csv(path: str | Path) -> Digits:
    """Kaggle's ``train.csv`` (label + 784 pixels) or ``test.csv`` (784 pixels, labels -1)."""
    path = Path(path)
    source = str(path)
    raw = _read_bytes(path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DigitrecError(f"not a text file (byte {e.start} is not UTF-8)", source) from None
    header, _, body = text.partition("\n")
    labelled = _kaggle_columns(header.rstrip("\r"), source)
    columns = (["label"] if labelled else []) + PIXEL_COLUMNS
    all_lines = body.splitlines()
    numbers = [i + 2 for i, line in enumerate(all_lines) if line.strip()]  # file line numbers of the data rows
    lines = [all_lines[n - 2] for n in numbers]
    if not lines:
        raise DigitrecError("no data rows after the header", source)
    table = _kaggle_table(lines, numbers, columns, source)
    labels = table[:, 0].astype(np.int64) if labelled else np.full(len(table), -1, dtype=np.int64)
    images = table[:, -PIXELS:].astype(np.uint8).reshape(-1, FIELD, FIELD)
    return Digits(images, labels, path.name, hashlib.sha256(raw).hexdigest())


KAGGLE_TRAIN = 42_000  # digits in the Digit Recognizer competition's train.csv


def kaggle_from_mnist(data_dir: str | Path | None = None) -> Path:
    """Kaggle's Digit Recognizer files rebuilt from MNIST in the cache, for replaying the reports that trained on them.

    ``train.csv`` holds MNIST's first 42,000 training digits (label, pixel0..pixel783), as many as
    Kaggle's; ``test.csv`` MNIST's 10,000 test digits without labels, as Kaggle's test file has none
    (their labels are MNIST's, so a replay can measure what Kaggle only scored). Returns the folder.
    """
    folder = cache_dir() / "kaggle-mnist"
    if (folder / "train.csv").is_file() and (folder / "test.csv").is_file():
        return folder
    cells = [str(value) for value in range(256)]  # a list, not an array: joining NumPy strings took 14 s instead of 2.5
    for name, part, count in (("train.csv", "train", KAGGLE_TRAIN), ("test.csv", "test", None)):
        digits = load_mnist(part, data_dir)
        table = digits.images[:count].reshape(-1, PIXELS)
        header = ",".join((["label"] if count else []) + PIXEL_COLUMNS)
        if count:
            table = np.concatenate([digits.labels[:count, None].astype(np.uint8), table], axis=1)
        rows = (",".join(map(cells.__getitem__, row)) for row in table.tolist())
        atomic_write(folder / name, (header + "\n" + "\n".join(rows) + "\n").encode())
    return folder


def load_image_folder(root: str | Path) -> Digits:
    """Images sorted into ``root/0`` … ``root/9``, each brought into MNIST's format."""
    from digitrec.images import to_mnist  # Pillow is only needed for this source

    root = Path(root)
    paths, labels = [], []
    for digit in range(10):
        folder = root / str(digit)
        if folder.is_dir():
            found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            paths += found
            labels += [digit] * len(found)
    if not paths:
        raise DigitrecError("no images found in subfolders 0-9 (expected DIR/<digit>/*.png)", str(root))
    images = np.stack([to_mnist(p) for p in paths]) if paths else np.zeros((0, FIELD, FIELD), np.uint8)
    return Digits(images, np.array(labels, dtype=np.int64), root.name, _file_checksum(*paths))


def source_of(spec: str) -> tuple[str, str]:
    """What a data spec names: (kind, location), kind one of ``mnist``, ``kaggle-mnist``, ``npz``, ``kaggle`` or ``folder``
    (location: a path, or "" for MNIST's own folder). An unknown kind or a path that is not there is refused here,
    before anything is read."""
    kind, sep, location = spec.partition(":")
    if not sep:
        if spec in ("mnist", "kaggle-mnist"):
            return spec, ""
        location, path = spec, Path(spec)
        kind = {".npz": "npz", ".csv": "kaggle"}.get(path.suffix.lower(), "folder" if path.is_dir() else "")
    if kind == "mnist":
        return kind, location
    if kind not in ("npz", "kaggle", "folder"):
        raise DigitrecError("unknown data source; use mnist, kaggle-mnist, npz:PATH, kaggle:PATH or folder:DIR", spec)
    if not Path(location).exists():
        raise DigitrecError("no such file or folder", location or spec)
    return kind, location


def load(spec: str = "mnist", part: str = "train", data_dir: str | Path | None = None) -> Digits:
    """Load digits named by a data spec.

    ``mnist`` (the default), ``kaggle-mnist`` (see :func:`kaggle_from_mnist`), ``npz:PATH``,
    ``kaggle:PATH`` (a Kaggle CSV), ``folder:DIR``,
    or a bare path whose kind is told by its suffix (``.npz``, ``.csv``) or by being a folder.
    ``part`` picks ``train`` or ``test`` where a source has both.
    """
    kind, location = source_of(spec)
    if kind == "mnist":
        return load_mnist(part, location or data_dir)
    if kind == "kaggle-mnist":  # Kaggle's train.csv rebuilt from MNIST; its test part is MNIST's labelled test set
        return load_kaggle_csv(kaggle_from_mnist(data_dir) / "train.csv") if part == "train" else load_mnist("test", data_dir)
    if kind == "npz":
        return load_npz(location, part)
    if kind == "kaggle":
        return load_kaggle_csv(location)
    return load_image_folder(location)


def holdout_split(labels: np.ndarray, fraction: float, seed: int, how: str = "stratified") -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation): ``how`` is "stratified" (see :func:`stratified_split`) or "last", the last
    ``fraction`` of the digits in their order, as Keras' ``fit(validation_split=...)`` holds them out."""
    if how == "last":
        split_at = int(len(labels) * (1.0 - fraction))  # Keras' own arithmetic
        return np.arange(split_at), np.arange(split_at, len(labels))
    return stratified_split(labels, fraction, seed)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation) with ``fraction`` of each class held out, reproducibly."""
    generator = np.random.default_rng(seed)
    held_out = [generator.permutation(np.flatnonzero(labels == digit))[: round(int((labels == digit).sum()) * fraction)]
                for digit in np.unique(labels)]
    validation = np.sort(np.concatenate(held_out)) if held_out else np.zeros(0, np.int64)
    keep = np.ones(len(labels), dtype=bool)
    keep[validation] = False
    return np.flatnonzero(keep), validation


def class_counts(digits: Digits) -> list[int]:
    return np.bincount(digits.labels[digits.labels >= 0], minlength=10).tolist()
