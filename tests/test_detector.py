"""The digit detector: it passes digits, it catches letters and signs, it is what it says, and the tool that trains it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from digitrec import data, detector, images
from digitrec.detector import Detector
from digitrec.errors import DigitrecError

REPO = Path(__file__).resolve().parents[1]
# DejaVu, a font the detector never learned from (tools/train_detector.py draws STIX, Computer Modern and Hershey)
DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
NOT_DIGITS = "ACDEFHKMNPRUVWXYacdefhkmnprtuvwxy#%@&$?"


def _bundled() -> Detector:
    found = detector.bundled()
    if found is None:
        pytest.skip("this checkout has no bundled digit detector")
    return found


def _written(char: str, side: int = 120) -> np.ndarray:
    """``char`` in black on a white page, as a user's image; DejaVu if this machine has it, else Pillow's own font."""
    font = ImageFont.truetype(str(DEJAVU), side * 2 // 3) if DEJAVU.is_file() else ImageFont.load_default(side * 2 // 3)
    page = Image.new("L", (side, side), 255)
    ImageDraw.Draw(page).text((side / 2, side / 2), char, fill=0, font=font, anchor="mm")
    return np.asarray(page)


def test_the_bundled_detector_passes_digits_and_catches_letters_and_signs(mnist_dir: Path):
    judge = _bundled()
    assert judge.meta["kind"] == detector.KIND
    test = data.load_mnist("test", mnist_dir, download=False)
    assert judge.not_digits(test.images[:2000]).mean() <= 0.003  # none with the bundled detector (0.06 % of all 10,000)
    printed = np.stack([images.to_mnist(_written(char)) for char in "0123456789"])
    assert not judge.not_digits(printed).any()
    strangers = np.stack([images.to_mnist(_written(char)) for char in NOT_DIGITS])
    assert judge.not_digits(strangers).mean() >= 0.8  # 39 of 39 with the bundled detector


def test_only_a_digit_detector_is_taken_for_one(tmp_path: Path):
    digit_model = REPO / "src" / "digitrec" / "assets" / "default.onnx"
    with pytest.raises(DigitrecError, match="not a digitrec digit detector"):
        Detector(digit_model)
    pickle = tmp_path / "detector.onnx"
    pickle.write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(DigitrecError, match="never unpickles"):
        Detector(pickle)


def test_the_trainer_writes_a_detector_the_package_loads(tmp_path: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch):
    spec = importlib.util.spec_from_file_location("train_detector", REPO / "tools" / "train_detector.py")
    tool = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "train_detector", tool)  # its worker processes find the page drawer by name
    spec.loader.exec_module(tool)
    monkeypatch.setenv("DIGITREC_DATA", str(mnist_dir))
    out = tmp_path / "detector.onnx"
    tool.main(["--pages", "64", "--epochs", "1", "--digits", "1200", "--out", str(out)])
    judge = Detector(out)
    provenance = judge.meta["provenance"]
    assert provenance["pages"] == 64 and provenance["train_data"]["digits"] == 1000
    assert judge.scores(np.zeros((3, 28, 28), np.uint8)).shape == (3,)
    others = tool.pages(("other", 20, 1, 1000))
    assert others.dtype == np.uint8 and others.shape[1:] == (28, 28) and len(others) >= 15
