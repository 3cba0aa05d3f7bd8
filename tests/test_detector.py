"""The digit detector: it passes digits, catches letters and signs, is what it says, and `digitrec train --model detector` trains it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import mnist_npz_file, printed_page, refuses_other_models, run_cli
from PIL import Image

from digitrec import checkpoint, data, detector, images
from digitrec.detector import Detector
from digitrec.synthetic.pages import pages

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


def test_a_detector_trained_by_digitrec_train_is_read_by_the_package_and_predict(tmp_path: Path, mnist_dir: Path):
    npz = mnist_npz_file(tmp_path / "digits.npz", mnist_dir, 480)
    trained = run_cli("train", "--model", "detector", "--data", f"npz:{npz}", "--epochs", "1", "--out", str(tmp_path / "run"),
                      "--quiet")
    assert trained.returncode == 0, trained.stderr
    judge = Detector(tmp_path / "run" / "final.onnx")
    assert judge.meta["kind"] == detector.KIND and judge.meta["data"]["count"] == 400  # the last sixth set the threshold
    assert judge.threshold == checkpoint.read_metadata(tmp_path / "run" / "final.safetensors")["threshold"]
    assert judge.scores(np.zeros((3, 28, 28), np.uint8)).shape == (3,)
    page = tmp_path / "page.png"
    Image.fromarray(printed_page("7")).save(page)
    assert run_cli("predict", "--detector", str(tmp_path / "run"), str(page)).returncode == 0


def test_pages_of_other_things_come_out_as_the_digit_model_sees_an_image():
    others = pages(20, 1)
    assert others.dtype == np.uint8 and others.shape[1:] == (28, 28) and len(others) >= 15
    assert np.array_equal(others, pages(20, 1))  # drawn from the seed alone
