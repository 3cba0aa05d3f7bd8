"""The digit detector: it passes digits, it catches letters and signs, it is what it says, and the tool that trains it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import load_tool, printed_page, refuses_other_models

from digitrec import data, detector, images
from digitrec.detector import Detector

NOT_DIGITS = "ACDEFHKMNPRUVWXYacdefhkmnprtuvwxy#%@&$?"  # in DejaVu, a font the detector never learned from


def _bundled() -> Detector:
    found = detector.bundled()
    if found is None:
        pytest.skip("this checkout has no bundled digit detector")
    return found


def test_the_bundled_detector_passes_digits_and_catches_letters_and_signs(mnist_dir: Path):
    judge = _bundled()
    assert judge.meta["kind"] == detector.KIND
    test = data.load_mnist("test", mnist_dir, download=False)
    assert judge.not_digits(test.images[:2000]).mean() <= 0.003  # none with the bundled detector (0.06 % of all 10,000)
    printed = np.stack([images.to_mnist(printed_page(char)) for char in "0123456789"])
    assert not judge.not_digits(printed).any()
    strangers = np.stack([images.to_mnist(printed_page(char)) for char in NOT_DIGITS])
    assert judge.not_digits(strangers).mean() >= 0.8  # 39 of 39 with the bundled detector


def test_only_a_digit_detector_is_taken_for_one(tmp_path: Path):
    refuses_other_models(Detector, "digit detector", tmp_path)


def test_the_trainer_writes_a_detector_the_package_loads(tmp_path: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch):
    tool = load_tool("train_detector")
    monkeypatch.setenv("DIGITREC_DATA", str(mnist_dir))
    out = tmp_path / "detector.onnx"
    tool.main(["--pages", "64", "--epochs", "1", "--digits", "1200", "--out", str(out)])
    judge = Detector(out)
    provenance = judge.meta["provenance"]
    assert provenance["pages"] == 64 and provenance["train_data"]["digits"] == 1000
    assert judge.scores(np.zeros((3, 28, 28), np.uint8)).shape == (3,)
    others = tool.pages(20, 1)
    assert others.dtype == np.uint8 and others.shape[1:] == (28, 28) and len(others) >= 15
