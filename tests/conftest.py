"""Shared fixtures: real MNIST when it is beside the checkout, small synthetic digits otherwise."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from digitrec.errors import DigitrecError

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"
DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")  # Debian's fonts-dejavu-core

if os.environ.get("PYTEST_XDIST_WORKER"):  # one worker a core (make test: -n 2): a thread each, here and in the commands it runs
    os.environ.setdefault("OMP_NUM_THREADS", "1")


# Under xdist (make test: -n 2 --dist loadgroup) each worker builds its own session and module fixtures: the tests that share
# an expensive one run on one worker, which builds it once.
SHARED_FIXTURES = ("fast_mnist_run", "uninterrupted")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups into the test ids that it schedules by
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        shared = next((name for name in SHARED_FIXTURES if name in getattr(item, "fixturenames", ())), None)
        if shared:
            group = shared if shared == "fast_mnist_run" else f"{item.module.__name__}.{shared}"
            item.add_marker(pytest.mark.xdist_group(group))


def pytest_collection_finish(session: pytest.Session) -> None:
    if getattr(session.config.option, "loadgroup", False):  # an xdist worker under --dist loadgroup
        lost = [item.nodeid for item in session.items if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]
        if lost:  # xdist would spread them over both workers, each building the fixture they share again
            # an error raised here reaches the terminal only as xdist's INTERNALERROR: the reason goes to stderr itself
            print(f"conftest.py: pytest-xdist ignored the test groups ({lost[0]} has none): see pyproject.toml's pin of pytest",
                  file=sys.__stderr__)
            pytest.exit("pytest-xdist ignored the test groups", returncode=3)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the user's cache untouched; one decoded-MNIST cache for the whole session."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv("DIGITREC_DATA", raising=False)


@pytest.fixture(scope="session")
def fast_mnist_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory of the fast recipe trained on real MNIST (about 10 s), shared by the tests that read it."""
    if not (SHARED_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST not found in {SHARED_MNIST} (CI has it there)")
    from digitrec import plans, training

    out = tmp_path_factory.mktemp("fast") / "run"
    with pytest.MonkeyPatch.context() as patch:  # session fixtures start before private_cache
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))
        training.train(plans.PRESETS["fast"], data_dir=SHARED_MNIST, out=out, progress=False, log=lambda line: None)
    return out


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CNN trained for a few seconds on synthetic bars (one bar height per class)."""
    import digitrec

    folder = tmp_path_factory.mktemp("synthetic")
    synthetic_npz_file(folder / "digits.npz", 600, seed=1, test=50)
    with pytest.MonkeyPatch.context() as patch:  # session fixtures start before private_cache
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))
        run = digitrec.train("seed001-cnn1", data_spec=f"npz:{folder / 'digits.npz'}", epochs=3, lr=0.003, out=folder / "run",
                             progress=False, log=lambda line: None)
    return run.run_dir


@pytest.fixture
def mnist_dir() -> Path:
    if not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST not found in {SHARED_MNIST} (CI has it there)")
    return SHARED_MNIST


def synthetic_digits(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Easy 28x28 'digits': class c is a bright bar at row 3 + 2c, shifted sideways, on noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    images = rng.integers(0, 40, size=(count, 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):
        row = 3 + 2 * c
        start = rng.integers(2, 8)
        images[i, row : row + 2, start : start + 16] = 255
    return images, labels.astype(np.uint8)


def mnist_npz_file(path: Path, mnist_dir: Path, count: int) -> Path:
    """A Keras-style npz of MNIST's first ``count`` training digits (and as many test digits, at most 100)."""
    from digitrec import data

    train, test = data.load_mnist("train", mnist_dir, download=False), data.load_mnist("test", mnist_dir, download=False)
    np.savez(path, x_train=train.images[:count], y_train=train.labels[:count], x_test=test.images[:100], y_test=test.labels[:100])
    return path


def synthetic_npz_file(path: Path, count: int, seed: int, test: int = 100) -> Path:
    """A Keras-style npz of ``count`` synthetic training digits (its first ``test`` again as the test part)."""
    x, y = synthetic_digits(count, seed)
    np.savez(path, x_train=x, y_train=y, x_test=x[:test], y_test=y[:test])
    return path


@pytest.fixture
def synthetic_npz(tmp_path: Path) -> Path:
    """A Keras-style mnist.npz of synthetic digits (600 train, 200 test)."""
    x_train, y_train = synthetic_digits(600, seed=1)
    x_test, y_test = synthetic_digits(200, seed=2)
    path = tmp_path / "digits.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the real ``digitrec`` command in a subprocess."""
    return subprocess.run([sys.executable, "-m", "digitrec", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=600)


# --- runs in other processes: their weights, and waiting on them ---

def weights(run_dir: Path) -> dict[str, np.ndarray]:
    import safetensors.torch

    return {k: v.numpy() for k, v in safetensors.torch.load_file(run_dir / "final.safetensors").items()}


def same_weights(a: Path, b: Path) -> bool:
    first, second = weights(a), weights(b)
    return first.keys() == second.keys() and all(np.array_equal(first[k], second[k]) for k in first)


def wait_for(condition: Callable[[], bool], process: subprocess.Popen, timeout: float = 120, pause: float = 0.0005) -> bool:
    """Poll until ``condition()``, which once true stays true (a file written, a line counted); False if the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if process.poll() is not None:
            return condition()
        time.sleep(pause)
    raise AssertionError("timed out waiting on the training process")


class Terminal:
    """A command run on a terminal of its own, as a user runs it, so that training draws its progress bar after every
    step (tqdm draws only on a terminal; TQDM_MININTERVAL=0 lifts its 0.1 s between redraws). The bar is how a test
    knows which step a run has reached: an event, never a guess of how long a step takes."""

    def __init__(self, command: Sequence[str], env: dict[str, str], **popen: Any):
        main, side = pty.openpty()
        fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))  # a new terminal is 0 wide: tqdm draws nothing
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=side, stderr=side,
                                        env={**env, "TQDM_MININTERVAL": "0"}, **popen)
        os.close(side)
        self._text, self._closed = "", False
        self._changed = threading.Condition()
        threading.Thread(target=self._read, args=(main,), daemon=True).start()

    def _read(self, fd: int) -> None:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: every process holding the terminal has ended
                chunk = b""
            with self._changed:
                self._text += chunk.decode(errors="replace")
                self._closed = not chunk
                self._changed.notify_all()
            if not chunk:
                os.close(fd)
                return

    def reached(self, epoch: int, step: int, timeout: float = 120) -> bool:
        """Wait until the bar shows ``step`` steps done in ``epoch``; False if the output ended first."""
        bar = re.compile(rf"epoch {epoch}/\d+:[^\r\n]*?\| *(\d+)/\d+ ")

        def done() -> bool:
            return any(int(n) >= step for n in bar.findall(self._text))

        with self._changed:
            if not self._changed.wait_for(lambda: done() or self._closed, timeout):
                raise AssertionError(f"timed out waiting for step {step} of epoch {epoch}:\n{self.output()}")
            return done()

    def finish(self, timeout: float = 300) -> tuple[int, str]:
        """The exit code and what the command printed, once it has ended (the bar's redraws left out)."""
        code = self.process.wait(timeout=timeout)
        with self._changed:
            self._changed.wait_for(lambda: self._closed, timeout)
        return code, self.output()

    def output(self) -> str:
        lines = (part.strip() for part in re.split(r"[\r\n]+", self._text))
        return "\n".join(line for line in lines if line and not re.search(r"\| *\d+/\d+ \[", line))


def refuses_other_models(opener: Callable[[Path], object], kind: str, tmp_path: Path) -> None:
    """``opener`` takes neither the digit model's ONNX file nor a pickle for a ``kind``: one line says which it is not."""
    with pytest.raises(DigitrecError, match=f"not a digitrec {kind}"):
        opener(REPO / "src" / "digitrec" / "assets" / "default.onnx")
    pickle = tmp_path / "model.onnx"
    pickle.write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(DigitrecError, match="never unpickles"):
        opener(pickle)


def printed_page(char: str, side: int = 120) -> np.ndarray:
    """``char`` printed in black on a white page, as a user's image: in DejaVu where the machine has it (the detector
    never learned from it: digitrec.synthetic.pages draws STIX, Computer Modern and Hershey), else in Pillow's own font."""
    from PIL import Image, ImageDraw, ImageFont

    size = side * 2 // 3
    font = ImageFont.truetype(str(DEJAVU), size) if DEJAVU.is_file() else ImageFont.load_default(size)
    page = Image.new("L", (side, side), 255)
    ImageDraw.Draw(page).text((side / 2, side / 2), char, fill=0, font=font, anchor="mm")
    return np.asarray(page)


def flagged_one(digit: np.ndarray, length: float) -> np.ndarray:
    """An MNIST 1 as a person's drawing (dark on light, 112 px) with a European flag: a stroke from its top, down to the left,
    ``length`` of its height long."""
    page = cv2.resize(digit, (112, 112), interpolation=cv2.INTER_CUBIC)
    ys, xs = np.nonzero(page > 128)
    top, height = int(ys.min()), int(ys.max() - ys.min())
    start = (int(np.median(xs[ys < top + 4])), top)
    pen = int(np.clip(np.count_nonzero(page[top + height // 2] > 128), 5, 14))
    end = (round(start[0] - length * height * np.cos(np.radians(40))), round(top + length * height * np.sin(np.radians(40))))
    cv2.line(page, start, end, 255, pen, lineType=cv2.LINE_AA)
    return 255 - page
