"""Readers fed random and damaged bytes: every file is read, or refused with digitrec's one-line error; nothing else escapes.

Hypothesis draws the bytes: anything at all, and valid files (IDX, gzip, Kaggle CSV, npz, PNG,
checkpoints, training states) with bytes changed, cut short or spliced in.
"""

from __future__ import annotations

import gzip
import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from digitrec import checkpoint, data, models, predict
from digitrec.errors import DigitrecError

# DIGITREC_FUZZ_EXAMPLES=5000 searches deeper than CI has time for
FUZZ = settings(max_examples=int(os.environ.get("DIGITREC_FUZZ_EXAMPLES", "120")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def damaged(valid: bytes) -> st.SearchStrategy[bytes]:
    """``valid`` with a few bytes changed, cut short, or with bytes spliced in."""
    position = st.integers(0, len(valid) - 1)
    changed = st.lists(st.tuples(position, st.integers(0, 255)), min_size=1, max_size=8).map(
        lambda edits: _edit(valid, edits))
    cut = st.integers(0, len(valid) - 1).map(lambda n: valid[:n])
    spliced = st.tuples(position, st.binary(min_size=1, max_size=64)).map(lambda t: valid[: t[0]] + t[1] + valid[t[0]:])
    return st.one_of(changed, cut, spliced)


def _edit(valid: bytes, edits: list[tuple[int, int]]) -> bytes:
    blob = bytearray(valid)
    for index, value in edits:
        blob[index] = value
    return bytes(blob)


def anything_or(valid: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=2048), damaged(valid))


def read_or_refuse(read: Callable[[], object]) -> None:
    """The one behaviour allowed: a value, or a DigitrecError of one line."""
    try:
        read()
    except DigitrecError as e:
        assert "\n" not in str(e), str(e)


def as_file(blob: bytes, name: str, read: Callable[[Path], object]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(blob)
        read_or_refuse(lambda: read(path))


def _idx(array: np.ndarray) -> bytes:
    return bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape) + array.tobytes()


IMAGES = _idx(np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28))
LABELS = _idx(np.array([3, 1, 4], dtype=np.uint8))


@FUZZ
@given(anything_or(IMAGES) | anything_or(LABELS) | anything_or(gzip.compress(LABELS)))
def test_idx_files(blob: bytes):
    as_file(blob, "t10k-labels-idx1-ubyte", lambda path: data.parse_idx(data._gunzip_if_needed(path.read_bytes(), str(path)), str(path)))


CSV = ("label," + ",".join(f"pixel{i}" for i in range(784)) + "\n"
       + "".join(f"{d}," + ",".join(str((d * 7 + i) % 256) for i in range(784)) + "\n" for d in (3, 1, 4))).encode()


@FUZZ
@given(anything_or(CSV))
def test_kaggle_csv_files(blob: bytes):
    as_file(blob, "train.csv", data.load_kaggle_csv)


def _npz() -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    np.savez(buffer, x_train=rng.integers(0, 256, (2, 28, 28), dtype=np.uint8), y_train=np.array([1, 2], np.uint8),
             x_test=rng.integers(0, 256, (1, 28, 28), dtype=np.uint8), y_test=np.array([7], np.uint8))
    return buffer.getvalue()


@FUZZ
@given(anything_or(_npz()))
def test_npz_files(blob: bytes):
    as_file(blob, "mnist.npz", data.load_npz)


def _png() -> bytes:
    canvas = np.full((40, 30), 255, np.uint8)
    canvas[8:32, 13:17] = 0  # a dark "1" on white
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def reader() -> predict.Predictor:
    return predict.load()  # the model in the box


@FUZZ
@given(blob=anything_or(_png()))
def test_images_read_by_the_whole_pipeline(reader: predict.Predictor, blob: bytes):
    read_or_refuse(lambda: reader.read([blob]))


def _checkpoint() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.safetensors"
        checkpoint.save(path, models.create("seed001-mlp1"), "seed001-mlp1", {})
        return path.read_bytes()


CHECKPOINT = _checkpoint()


@FUZZ
@given(anything_or(CHECKPOINT))
def test_model_files(blob: bytes):
    as_file(blob, "model.safetensors", checkpoint.load)


def _state() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "state.safetensors"
        checkpoint.save_state(path, {"epoch": 1, "order": None, "rng": np.zeros(4, np.uint8).tobytes().hex(), "weights": {"a": 1.5}})
        return path.read_bytes()


@FUZZ
@given(anything_or(_state()))
def test_training_state_files(blob: bytes):
    as_file(blob, "state.safetensors", checkpoint.load_state)
