"""Where digits come from, turned into uint8 tensors.

Sources: MNIST's IDX files (found on disk or downloaded from mirrors, checksum-verified),
Keras' ``mnist.npz``, Kaggle "Digit Recognizer" CSVs and folders of labelled images
(``DIR/<digit>/*.png``). Every source yields a :class:`Digits`: images as ``(N, 28, 28)``
uint8 with white ink on black, as in MNIST, and int64 labels (``-1`` where unknown).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import os
import struct
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitrec.errors import DigitrecError

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
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}


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
    chosen = data_dir or os.environ.get("DIGITREC_DATA") or cache_dir() / "mnist"
    return Path(chosen).expanduser()


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    expected = int(np.prod(dims))
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
    if images.shape[1:] != (28, 28):
        h, w = images.shape[1:]
        raise DigitrecError(f"wrong image size {h}x{w}, expected 28x28", source, "byte 8")


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
    with contextlib.suppress(OSError):  # a read-only cache only costs speed
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


def load_npz(path: str | Path, part: str = "train") -> Digits:
    """Keras' ``mnist.npz`` (``x_train``, ``y_train``, ``x_test``, ``y_test``); never unpickles."""
    path = Path(path)
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DigitrecError("a single array, not an .npz archive with x_train/y_train/x_test/y_test", str(path))
        with archive:
            images, labels = archive[f"x_{part}"], archive[f"y_{part}"]
    except KeyError:
        raise DigitrecError(f"no x_{part}/y_{part} arrays (expected Keras' mnist.npz layout)", str(path)) from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DigitrecError(f"not a readable .npz archive ({e})", str(path)) from None
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DigitrecError(f"x_{part} has shape {images.shape} and type {images.dtype}, expected (N, 28, 28) uint8", str(path))
    if labels.shape != (len(images),) or labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise DigitrecError(f"y_{part} must hold {len(images)} labels in 0-9", str(path))
    return Digits(np.array(images), labels.astype(np.int64), f"{path.name}:{part}", _file_checksum(path))


PIXEL_COLUMNS = [f"pixel{i}" for i in range(784)]


def _kaggle_columns(header: str, source: str) -> bool:
    """Validate the header; True if the file has a label column (train.csv)."""
    names = [name.strip().strip('"') for name in header.split(",")]
    if names and names[0].lstrip("-").replace(".", "", 1).isdigit():
        raise DigitrecError("missing header: the first line must be 'label,pixel0,...,pixel783' or 'pixel0,...,pixel783'", source, "line 1")
    labelled = names[:1] == ["label"]
    expected = (["label"] if labelled else []) + PIXEL_COLUMNS
    if names != expected:
        for i, (got, want) in enumerate(zip(names, expected, strict=False)):
            if got != want:
                raise DigitrecError(f"header has {got!r} where {want!r} belongs", source, f"line 1, column {i + 1}")
        raise DigitrecError(f"header has {len(names)} columns, expected {len(expected)}", source, "line 1")
    return labelled


def _locate_bad_cell(lines: list[str], numbers: list[int], columns: list[str], source: str) -> DigitrecError:
    """Find the first row that the fast parser rejected and say precisely why."""
    for number, line in zip(numbers, lines, strict=True):
        cells = line.split(",")
        if len(cells) != len(columns):
            return DigitrecError(f"row has {len(cells)} values, expected {len(columns)}", source, f"line {number}")
        for name, cell in zip(columns, cells, strict=True):
            try:
                value = int(cell)
            except ValueError:
                return DigitrecError(f"{cell.strip()!r} is not a whole number", source, f"line {number}, column {name}")
            if not 0 <= value <= (9 if name == "label" else 255):
                limit = "0-9" if name == "label" else "0-255"
                return DigitrecError(f"value {value} is outside {limit}", source, f"line {number}, column {name}")
    return DigitrecError("the file could not be parsed as CSV", source)


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
    try:
        table = np.loadtxt(lines, delimiter=",", dtype=np.int64, ndmin=2, comments=None)
    except (ValueError, OverflowError):
        raise _locate_bad_cell(lines, numbers, columns, source) from None
    if table.shape[1] != len(columns):
        raise _locate_bad_cell(lines, numbers, columns, source)
    pixels = table[:, -784:]
    bad = np.argwhere((pixels < 0) | (pixels > 255))
    if len(bad):
        row, col = (int(v) for v in bad[0])
        raise DigitrecError(f"pixel value {pixels[row, col]} is outside 0-255", source, f"line {numbers[row]}, column pixel{col}")
    labels = table[:, 0] if labelled else np.full(len(table), -1)
    bad = np.flatnonzero(labelled & ((labels < 0) | (labels > 9)))
    if len(bad):
        raise DigitrecError(f"label {labels[bad[0]]} is outside 0-9", source, f"line {numbers[int(bad[0])]}, column label")
    images = pixels.astype(np.uint8).reshape(-1, 28, 28)
    return Digits(images, labels.astype(np.int64), path.name, hashlib.sha256(raw).hexdigest())


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
    images = np.stack([to_mnist(p) for p in paths]) if paths else np.zeros((0, 28, 28), np.uint8)
    return Digits(images, np.array(labels, dtype=np.int64), root.name, _file_checksum(*paths))


def load(spec: str = "mnist", part: str = "train", data_dir: str | Path | None = None) -> Digits:
    """Load digits named by a data spec.

    ``mnist`` (the default), ``npz:PATH``, ``kaggle:PATH`` (a Kaggle CSV), ``folder:DIR``,
    or a bare path whose kind is told by its suffix (``.npz``, ``.csv``) or by being a folder.
    ``part`` picks ``train`` or ``test`` where a source has both.
    """
    kind, sep, location = spec.partition(":")
    if not sep:
        if spec == "mnist":
            return load_mnist(part, data_dir)
        location, path = spec, Path(spec)
        kind = {".npz": "npz", ".csv": "kaggle"}.get(path.suffix.lower(), "folder" if path.is_dir() else "")
    if kind == "mnist":
        return load_mnist(part, location or data_dir)
    if kind not in ("npz", "kaggle", "folder"):
        raise DigitrecError("unknown data source; use mnist, npz:PATH, kaggle:PATH or folder:DIR", spec)
    if not Path(location).exists():
        raise DigitrecError("no such file or folder", location or spec)
    if kind == "npz":
        return load_npz(location, part)
    if kind == "kaggle":
        return load_kaggle_csv(location)
    return load_image_folder(location)


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
