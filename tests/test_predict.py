"""Reading the digits people give: the Python API, `digitrec predict` and `digitrec submit`."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO, flagged_one, printed_page, run_cli, synthetic_digits
from PIL import Image

import digitrec
from digitrec import data, predict
from digitrec.errors import DigitrecError
from digitrec.predict import Predictor

REALWORLD = REPO.parent / "shared" / "data" / "realworld-dev"


def _mnist_digits(count: int) -> tuple[np.ndarray, np.ndarray]:
    from conftest import SHARED_MNIST

    test = data.load_mnist("test", SHARED_MNIST, download=False)
    return test.images[:count], test.labels[:count]


# --- the Python API ----------------------------------------------------------------------


def test_mnist_format_arrays_are_read_as_they_are_in_every_accepted_form(synthetic_run: Path):
    torch = pytest.importorskip("torch")
    reader = digitrec.load(synthetic_run)
    x, _ = synthetic_digits(20, seed=5)
    expected = reader.predict_proba(x)
    assert expected.shape == (20, 10) and np.allclose(expected.sum(1), 1.0)
    assert np.allclose(reader.predict_proba(x.reshape(20, 784)), expected)
    assert np.allclose(reader.predict_proba(x / 255.0), expected, atol=1e-6)
    assert np.allclose(reader.predict_proba(torch.from_numpy(x)), expected)
    assert np.allclose(reader.predict_proba(x[0]), expected[:1])
    assert reader.predict(x).tolist() == expected.argmax(1).tolist()


def test_paths_pil_images_and_photos_as_arrays_go_through_the_same_preprocessing(synthetic_run: Path, tmp_path: Path):
    reader = digitrec.load(synthetic_run)
    canvas = np.full((120, 90), 255, np.uint8)  # a dark stroke on white paper, not MNIST's format
    canvas[30:90, 40:52] = 20
    Image.fromarray(canvas).save(tmp_path / "stroke.png")
    from_path = reader.predict_proba(tmp_path / "stroke.png")
    assert np.allclose(reader.predict_proba(str(tmp_path / "stroke.png")), from_path)
    assert np.allclose(reader.predict_proba(Image.fromarray(canvas)), from_path)
    assert np.allclose(reader.predict_proba(canvas), from_path)
    assert reader.predict([tmp_path / "stroke.png", Image.fromarray(canvas)]).shape == (2,)


def test_unreadable_inputs_raise_a_clear_error(synthetic_run: Path, tmp_path: Path):
    reader = digitrec.load(synthetic_run)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(DigitrecError, match=r"notes\.png"):
        reader.predict(tmp_path / "notes.png")
    with pytest.raises(DigitrecError, match="NaN"):
        reader.predict(np.full((28, 28), np.nan))
    with pytest.raises(DigitrecError, match="cannot read a dict"):
        reader.predict([{"pixels": 1}])


def test_a_blank_page_is_no_digit_rather_than_a_guess(synthetic_run: Path):
    reading = digitrec.load(synthetic_run).read(Image.new("L", (300, 200), 250))[0]
    assert reading.digit is None and reading.uncertain and "no ink" in reading.reason


def test_a_page_with_nothing_to_read_says_why_and_is_called_blank_only_when_it_is():
    """A printed sudoku whose digits were dropped with its grid was "a blank image": the reason names what was dropped."""
    squared, ruled, dot = (np.full((300, 300), 255, np.uint8) for _ in range(3))
    squared[10::24] = squared[:, 10::24] = 150
    ruled[20::30] = 120
    dot[140:146, 140:146] = 0
    busy = np.random.default_rng(0).integers(0, 256, (200, 200), dtype=np.uint8)  # a group photo was "a blank image" too
    pages = [squared, ruled, dot, busy, np.full((100, 100), 255, np.uint8)]
    reasons = [reading.reason for reading in digitrec.load().read(pages)]
    assert reasons == ["no digit found: only lines (of a grid, a form or ruled paper), which are not read"] * 2 + [
        "no digit found: only a dot", "no digit found: the whole image is busy, and no pen strokes stand out of it",
        "no ink found: a blank image"]
    assert digitrec.load().read(squared, multi=True)[0].reason == reasons[0]


@pytest.mark.parametrize("shape", ["(N, 1, 28, 28)", "(N, 28, 28, 1)", "(N, 28, 28, 3)", "(N, 3, 28, 28)", "float tensor (N, 1, 28, 28)",
                                   "list of (28, 28, 1)", "nested lists"])
def test_the_array_shapes_pytorch_and_keras_users_hold_read_as_the_same_digits(synthetic_run: Path, shape: str):
    torch = pytest.importorskip("torch")
    reader = digitrec.load(synthetic_run)
    x, _ = synthetic_digits(6, seed=5)
    given = {
        "(N, 1, 28, 28)": x[:, None],
        "(N, 28, 28, 1)": x[..., None],
        "(N, 28, 28, 3)": np.repeat(x[..., None], 3, axis=3),
        "(N, 3, 28, 28)": np.repeat(x[:, None], 3, axis=1),
        "float tensor (N, 1, 28, 28)": torch.from_numpy(x[:, None].astype(np.float32) / 255),
        "list of (28, 28, 1)": list(x[..., None]),
        "nested lists": x.tolist(),
    }[shape]
    assert np.allclose(reader.predict_proba(given), reader.predict_proba(x), atol=1e-6)


def test_one_flattened_digit_is_one_digit_not_784_one_pixel_images(synthetic_run: Path):
    reader = digitrec.load(synthetic_run)
    x, _ = synthetic_digits(3, seed=5)
    assert reader.predict(x[1].reshape(784)).tolist() == reader.predict(x[1:2]).tolist()
    assert np.allclose(reader.predict_proba(x[1].reshape(784)), reader.predict_proba(x[1:2]))
    assert reader.predict((x[1].reshape(784) / 255).tolist()).shape == (1,)
    assert len(reader.read(x[1].reshape(784))) == 1


@pytest.mark.parametrize(("value", "message"), [
    (5, "cannot read a int as a digit: give file paths, encoded image bytes"),
    (None, "cannot read a NoneType as a digit"),
    (np.zeros((2, 64, 64, 3)), r"shaped \(2, 64, 64, 3\) is neither digits in MNIST's format \(\(28, 28\), \(784,\)"),
    (np.zeros((28, 28), dtype=complex), "pixels must be numbers"),
    (np.full((28, 28), 300.0), "pixel values run from 300 to 300; expected levels 0-255 or fractions 0-1"),
    ([np.zeros((3, 28, 28))], "an array of 3 digits inside a list: pass the array itself"),
])
def test_inputs_that_are_no_image_are_refused_naming_what_is_accepted(synthetic_run: Path, value, message: str):
    with pytest.raises(DigitrecError, match=message):
        digitrec.load(synthetic_run).predict(value)


def test_encoded_image_bytes_read_as_the_file_would(synthetic_run: Path, tmp_path: Path):
    reader = digitrec.load(synthetic_run)
    canvas = np.full((120, 90), 255, np.uint8)
    canvas[30:90, 40:52] = 20
    Image.fromarray(canvas).save(tmp_path / "stroke.png")
    blob = (tmp_path / "stroke.png").read_bytes()
    assert np.allclose(reader.predict_proba(blob), reader.predict_proba(tmp_path / "stroke.png"))
    with pytest.raises(DigitrecError, match="not a readable image"):
        reader.predict(b"hello")


def test_predict_agrees_with_read_on_a_blank_image_no_digit(synthetic_run: Path, tmp_path: Path):
    reader = digitrec.load(synthetic_run)
    Image.new("RGB", (200, 200), "white").save(tmp_path / "blank.png")
    x, _ = synthetic_digits(1, seed=5)
    inputs = [tmp_path / "blank.png", x[0], np.zeros((28, 28), np.uint8)]
    assert reader.predict(inputs).tolist() == [-1, reader.predict(x[0])[0], -1]
    probabilities = reader.predict_proba(inputs)
    assert probabilities[0].tolist() == [0.0] * 10 and probabilities[2].tolist() == [0.0] * 10
    assert probabilities[1].sum() == pytest.approx(1.0)
    readings = reader.read(inputs)
    assert [r.digit for r in readings] == [None, reader.predict(x[0])[0], None]


def test_a_model_whose_output_is_nan_is_never_read_as_certain(synthetic_run: Path, tmp_path: Path):
    import torch

    from digitrec import checkpoint

    loaded = checkpoint.load(synthetic_run / "final.safetensors")
    with torch.no_grad():
        for parameter in loaded.model.parameters():
            parameter.fill_(float("nan"))
    checkpoint.save(tmp_path / "broken.safetensors", loaded.model, loaded.architecture, loaded.meta["arguments"])
    reader = digitrec.load(tmp_path / "broken.safetensors")
    x, _ = synthetic_digits(2, seed=5)
    (reading, _) = reader.read(x)
    assert reading.uncertain and reading.digit is None and "not a number" in reading.reason
    assert reader.predict(x).tolist() == [-1, -1]
    Image.fromarray(x[0]).save(tmp_path / "d.png")
    printed = run_cli("predict", str(tmp_path / "broken.safetensors"), str(tmp_path / "d.png"))
    assert printed.returncode == 0 and "uncertain: the model's output is not a number" in printed.stdout and "nan" not in printed.stdout


def test_the_loaded_model_is_the_trained_torch_module(synthetic_run: Path):
    reader = digitrec.load(synthetic_run)
    assert sum(p.numel() for p in reader.model.parameters()) == reader.meta["parameters"]


def test_confidence_is_calibrated_after_training(fast_mnist_run: Path):
    """Label smoothing makes raw confidences too low; the fitted temperature brings them to the accuracy."""
    reader = digitrec.load(fast_mnist_run)
    assert 0.1 < reader.temperature < 1.0
    images, labels = _mnist_digits(2000)
    probabilities = reader.predict_proba(images)
    accuracy = (probabilities.argmax(1) == labels).mean()
    assert abs(probabilities.max(1).mean() - accuracy) < 0.01


def test_two_digits_in_one_image_are_flagged_and_read_as_a_number_with_multi(fast_mnist_run: Path):
    reader = digitrec.load(fast_mnist_run)
    images, labels = _mnist_digits(200)
    sure = [i for i in range(200) if reader.predict_proba(images[i]).max() > 0.99]
    first, second = sure[0], next(i for i in sure if labels[i] != labels[sure[0]])
    canvas = np.zeros((60, 120), np.uint8)
    canvas[16:44, 20:48], canvas[16:44, 70:98] = images[first], images[second]
    single = reader.read(canvas)[0]
    assert single.uncertain and "2 digits" in single.reason
    number = reader.read(canvas, multi=True)[0]
    assert number.number == f"{labels[first]}{labels[second]}"
    assert [d.digit for d in number.digits] == [labels[first], labels[second]]


@pytest.mark.skipif(not REALWORLD.is_dir(), reason=f"the real-world development set is not at {REALWORLD}")
def test_real_world_images_are_read_by_a_ten_second_model(fast_mnist_run: Path):
    files = sorted(p for p in REALWORLD.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    predicted = digitrec.load(fast_mnist_run).predict(files)
    correct = sum(int(p) == int(f.name[0]) for p, f in zip(predicted, files, strict=True))
    assert correct / len(files) >= 0.9


# --- digitrec predict -------------------------------------------------------------------


def test_predict_prints_digit_confidence_and_top3_for_files_and_folders(synthetic_run: Path, tmp_path: Path):
    x, _ = synthetic_digits(3, seed=3)
    folder = tmp_path / "drawings"
    (folder / "more").mkdir(parents=True)
    for i, image in enumerate(x):
        Image.fromarray(image).save(folder / ("more" if i else ".") / f"d{i}.png")
    result = run_cli("predict", str(synthetic_run), str(folder), "--json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(r["source"]).name for r in rows] == ["d0.png", "d1.png", "d2.png"]
    for row in rows:
        assert row["digit"] == row["top3"][0]["digit"] and len(row["top3"]) == 3
        assert row["confidence"] == row["top3"][0]["probability"]
    text = run_cli("predict", str(synthetic_run), str(folder / "d0.png"))
    assert text.returncode == 0 and "top 3:" in text.stdout


def test_a_sure_reading_is_never_printed_as_certain(mnist_dir: Path, tmp_path: Path):
    """The bundled model reads MNIST's first test digit at about 0.9999: "100.0%" would claim certainty."""
    Image.fromarray(data.load_mnist("test", mnist_dir, download=False).images[0]).save(tmp_path / "seven.png")
    digit, number = (run_cli("predict", str(tmp_path / "seven.png"), *extra).stdout for extra in ([], ["--multi"]))
    assert digit.split()[1:3] == ["7", ">99.9%"] and "100.0%" not in digit
    assert number.split()[1:3] == ["7", ">99.9%"] and "[7 (>99.9%)]" in number


def test_one_bad_file_is_reported_and_the_others_are_still_read(synthetic_run: Path, tmp_path: Path):
    x, _ = synthetic_digits(1, seed=3)
    Image.fromarray(x[0]).save(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    result = run_cli("predict", str(synthetic_run), str(tmp_path / "broken.png"), str(tmp_path / "good.png"))
    assert result.returncode == 2
    assert "good.png:" in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("digitrec: error:")]
    assert any("broken.png" in line for line in errors) and "Traceback" not in result.stderr
    alone = run_cli("predict", str(synthetic_run), str(tmp_path / "broken.png"))
    assert alone.returncode == 2 and alone.stderr.strip().count("\n") == 0 and "broken.png" in alone.stderr


def test_predict_reads_one_image_from_stdin(synthetic_run: Path):
    x, _ = synthetic_digits(1, seed=3)
    buffer = io.BytesIO()
    Image.fromarray(x[0]).save(buffer, format="PNG")
    result = subprocess.run([sys.executable, "-m", "digitrec", "predict", str(synthetic_run), "-", "--json"], input=buffer.getvalue(),
                            capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["source"] == "-"
    garbage = subprocess.run([sys.executable, "-m", "digitrec", "predict", str(synthetic_run), "-"], input=b"hello",
                             capture_output=True, timeout=300)
    assert garbage.returncode == 2 and b"stdin" in garbage.stderr


def test_save_preprocessed_writes_the_28x28_image_the_model_saw(synthetic_run: Path, tmp_path: Path):
    photo = np.full((400, 300, 3), 230, np.uint8)
    photo[100:300, 140:170] = (20, 20, 160)  # blue ink on paper
    Image.fromarray(photo).save(tmp_path / "photo.jpg")
    result = run_cli("predict", str(synthetic_run), str(tmp_path / "photo.jpg"), "--save-preprocessed", str(tmp_path / "seen"))
    assert result.returncode == 0, result.stderr
    (saved,) = (tmp_path / "seen").iterdir()
    seen = np.asarray(Image.open(saved))
    assert seen.shape == (28, 28) and seen.max() > 200 and seen[0, 0] == 0  # white ink on black, like MNIST


def test_saved_preprocessed_images_keep_each_input_name_numbered_only_where_two_share_it(synthetic_run: Path, tmp_path: Path):
    from digitrec.images import to_mnist

    for folder, box in (("a", (slice(20, 80), slice(45, 55))), ("b", (slice(45, 55), slice(20, 80)))):  # | and -
        canvas = np.full((100, 100), 255, np.uint8)
        canvas[box] = 0
        (tmp_path / folder).mkdir()
        Image.fromarray(canvas).save(tmp_path / folder / "x.png")
    result = run_cli("predict", str(synthetic_run), "a/x.png", "b/x.png", "--save-preprocessed", "seen", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "seen").iterdir()) == ["x-2.png", "x.png"]  # numbered only on a clash
    for saved, given in (("x.png", "a/x.png"), ("x-2.png", "b/x.png")):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "seen" / saved)), to_mnist(tmp_path / given))


def test_explain_shows_every_step_from_the_photo_to_the_digits_the_model_saw(synthetic_run: Path, tmp_path: Path):
    photo = np.full((240, 400, 3), 225, np.uint8)
    photo[:, 200:] -= 60  # a shadow over the right half
    photo[60:180, 90:110] = (30, 30, 30)  # a 1
    photo[60:180, 290:310] = (20, 20, 20)  # and another, in the shadow
    Image.fromarray(photo).save(tmp_path / "eleven.png")
    result = run_cli("predict", str(synthetic_run), "eleven.png", "--multi", "--explain", "why", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (strip,) = (tmp_path / "why").iterdir()
    assert strip.name == "eleven-steps.png"  # the input's own name
    image = np.asarray(Image.open(strip).convert("L"))
    tiles = np.flatnonzero(np.diff((image[8:-28] < 250).any(axis=0).astype(int)) == 1)  # left edges of the pictures
    assert len(tiles) >= 6  # the image, its ink axis, the paper removed, the ink kept, then one 28x28 per digit


def test_an_empty_folder_a_missing_file_and_stdin_among_files(synthetic_run: Path, tmp_path: Path):
    (tmp_path / "empty").mkdir()
    alone = run_cli("predict", str(synthetic_run), str(tmp_path / "empty"))
    assert alone.returncode == 2 and alone.stderr.strip() == f"digitrec: error: {tmp_path / 'empty'}: no images found in this folder " \
        "(PNG, JPEG, GIF, BMP, WebP, TIFF or ICO files)"
    x, _ = synthetic_digits(2, seed=3)
    Image.fromarray(x[0]).save(tmp_path / "good.png")
    buffer = io.BytesIO()
    Image.fromarray(x[1]).save(buffer, format="PNG")
    mixed = subprocess.run([sys.executable, "-m", "digitrec", "predict", str(synthetic_run), str(tmp_path / "missing.png"), "-",
                            str(tmp_path / "good.png")], input=buffer.getvalue(), capture_output=True, timeout=300)
    assert mixed.returncode == 2
    assert [line.split(":")[0] for line in mixed.stdout.decode().splitlines()] == ["-", str(tmp_path / "good.png")]
    assert mixed.stderr.decode().splitlines() == [f"digitrec: error: {tmp_path / 'missing.png'}: no such file",
                                                  "digitrec: error: 1 of 3 input(s) could not be read"]
    twice = run_cli("predict", str(synthetic_run), "-", "-")
    assert twice.returncode == 2 and "'-' (standard input) can be given only once" in twice.stderr


def test_threshold_sets_what_counts_as_uncertain(synthetic_run: Path, tmp_path: Path):
    x, _ = synthetic_digits(1, seed=3)
    Image.fromarray(np.where(x[0] > 128, 255, 0).astype(np.uint8)).save(tmp_path / "d.png")  # one clean stroke
    always = run_cli("predict", str(synthetic_run), str(tmp_path / "d.png"), "--threshold", "1", "--json")
    assert json.loads(always.stdout)["uncertain"] is True
    never = run_cli("predict", str(synthetic_run), str(tmp_path / "d.png"), "--threshold", "0", "--json")
    assert json.loads(never.stdout)["uncertain"] is False
    bad = run_cli("predict", str(synthetic_run), str(tmp_path / "d.png"), "--threshold", "80")
    assert bad.returncode == 2 and "--threshold" in bad.stderr


# --- digitrec submit ----------------------------------------------------------------------


def _kaggle_csv(path: Path, images: np.ndarray, labels: np.ndarray | None = None) -> Path:
    header = (["label"] if labels is not None else []) + [f"pixel{i}" for i in range(784)]
    rows = images.reshape(len(images), -1).astype(int)
    if labels is not None:
        rows = np.column_stack([labels, rows])
    path.write_text(",".join(header) + "\n" + "\n".join(",".join(map(str, row)) for row in rows) + "\n")
    return path


def test_submit_writes_one_row_per_test_row_in_order_from_image_id_1(synthetic_run: Path, tmp_path: Path):
    x, _ = synthetic_digits(30, seed=9)
    test_csv = _kaggle_csv(tmp_path / "test.csv", x)
    result = run_cli("submit", str(synthetic_run), "--test", str(test_csv), "-o", str(tmp_path / "submission.csv"))
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "submission.csv").read_text().splitlines()
    assert lines[0] == "ImageId,Label" and len(lines) == 31
    expected = digitrec.load(synthetic_run).predict(x)
    assert lines[1:] == [f"{i},{d}" for i, d in enumerate(expected, start=1)]


def test_submit_refuses_the_training_file_and_bad_rows_without_touching_an_old_submission(synthetic_run: Path, tmp_path: Path):
    x, y = synthetic_digits(5, seed=9)
    old = tmp_path / "submission.csv"
    old.write_text("ImageId,Label\n1,7\n")
    train_csv = _kaggle_csv(tmp_path / "train.csv", x, y)
    result = run_cli("submit", str(synthetic_run), "--test", str(train_csv), "-o", str(old))
    assert result.returncode == 2 and "label column" in result.stderr
    broken = _kaggle_csv(tmp_path / "test.csv", x)
    lines = broken.read_text().splitlines()
    lines[1] = "x" + lines[1][lines[1].index(",") :]  # the first pixel of the first row is not a number
    broken.write_text("\n".join(lines) + "\n")
    result = run_cli("submit", str(synthetic_run), "--test", str(broken), "-o", str(old))
    assert result.returncode == 2 and "test.csv, line 2" in result.stderr
    assert old.read_text() == "ImageId,Label\n1,7\n"


def test_training_on_kaggles_csv_holds_out_a_validation_split(tmp_path: Path):
    x, y = synthetic_digits(200, seed=4)
    train_csv = _kaggle_csv(tmp_path / "train.csv", x, y)
    result = run_cli("train", "--recipe", "fast", "--data", f"kaggle:{train_csv}", "--out", str(tmp_path / "run"))  # holds out none itself
    assert result.returncode == 0, result.stderr
    assert "val loss" in result.stdout
    meta = digitrec.load(tmp_path / "run").meta
    assert meta["training"]["recipe"]["validation"] == 0.1 and meta["data"]["count"] == 180


# --- the bundled model ------------------------------------------------------------------------


def test_the_bundled_model_says_where_it_came_from_and_still_reads_mnist(mnist_dir: Path):
    reader = digitrec.load()
    assert reader.engine.kind == "onnx" and reader.engine.source.name == "default.onnx"
    provenance = reader.meta["provenance"]
    assert provenance["recipe"] == "default" and provenance["seed"] == 0 and provenance["command"].startswith("make model")
    assert reader.meta["data"]["checksum"] == data.load_mnist("train", mnist_dir, download=False).checksum
    assert {"digitrec", "torch", "python"} <= set(reader.meta["versions"])
    test = data.load_mnist("test", mnist_dir, download=False)
    accuracy = float((reader.predict(test.images) == test.labels).mean())
    assert accuracy >= 0.996 and accuracy == pytest.approx(provenance["test_accuracy"], abs=1e-4)
    assert sum(p.numel() for p in reader.model.parameters()) == reader.meta["parameters"]  # its checkpoint ships beside it


def test_the_bundled_model_reads_ones_written_with_a_european_flag(mnist_dir: Path):
    """MNIST's writers seldom flagged their 1s; much of the world does. Drawn here by OpenCV, not as training draws them."""
    test = data.load_mnist("test", mnist_dir, download=False)
    readings = digitrec.load().read([flagged_one(one, 0.33) for one in test.images[test.labels == 1][:200]])
    assert np.mean([r.digit == 1 for r in readings]) >= 0.9  # 1.0; the model before 5178e62, trained without flags: 0.70


def test_commands_use_the_bundled_model_when_none_is_named(tmp_path: Path):
    Image.fromarray(np.eye(28, dtype=np.uint8) * 255).save(tmp_path / "d.png")
    result = run_cli("predict", str(tmp_path / "d.png"), "--json")
    assert result.returncode == 0 and "using the bundled model" in result.stderr
    assert json.loads(result.stdout)["source"] == str(tmp_path / "d.png")


NOTDIGIT = REPO.parent / "shared" / "data" / "notdigit-dev"
NUMBERS = REPO.parent / "shared" / "data" / "numbers-dev"


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        pytest.skip(f"development set not found at {folder}")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in {".png", ".jpg"})


def test_the_bundled_model_flags_what_is_not_a_digit_and_trusts_real_digits():
    """Letters, photos, icons, scribbles, text and blank pages from other people's repositories (44 real images)."""
    reader = digitrec.load()
    strangers = reader.read(_images(NOTDIGIT))
    # 42 of 44 with the bundled models: 40 flagged by the digit model alone, 32 before outlier exposure
    assert sum(r.uncertain for r in strangers) >= 0.95 * len(strangers)
    digits = reader.read(_images(REALWORLD))
    assert sum(r.uncertain for r in digits) <= 0.03 * len(digits)
    wrong = [r for r, path in zip(digits, _images(REALWORLD), strict=True) if r.digit != int(path.name[0])]
    assert len(wrong) <= 0.02 * len(digits) and all(r.uncertain for r in wrong)  # never a silent wrong answer


def test_letters_and_signs_the_digit_model_reads_surely_are_flagged_not_a_digit():
    reader = digitrec.load()
    if reader.detector is None:
        pytest.skip("this checkout has no bundled digit detector")
    pages = [printed_page(char) for char in "Uaehuy%@&$?"]
    alone = Predictor(reader.engine, row_reader=None, detector=None).read(pages)
    assert sum(not r.uncertain for r in alone) >= 4  # the digit model alone reads 5 of 11 at >= 0.9 (the model before 5178e62: 11)
    for both, one in zip(reader.read(pages), alone, strict=True):
        assert both.uncertain and (both.digit, both.confidence) == (one.digit, one.confidence)
        assert "not a digit" in both.reason or one.uncertain  # what the digit model alone doubts is flagged for that already


def test_second_models_flag_what_the_digit_model_alone_reads_surely(mnist_dir: Path):
    """The digit detector and the row reader look at the same 28x28 digit: where the detector finds no digit, or the
    row reader all but rules the digit out, the reading is flagged."""
    reader = digitrec.load()
    if reader.row_reader is None or reader.detector is None:
        pytest.skip("this checkout has no bundled row reader or digit detector")
    alone = Predictor(reader.engine, row_reader=None, detector=None)
    strangers = _images(NOTDIGIT)
    caught = [(both, one) for both, one in zip(reader.read(strangers), alone.read(strangers), strict=True)
              if both.uncertain and not one.uncertain]
    assert len(caught) >= 1  # a letter the digit model reads at >= 0.9 (the model before 5178e62 also read an icon so)
    for both, one in caught:
        assert ("detector" in both.reason or "row reader" in both.reason) and (both.digit, both.confidence) == (one.digit, one.confidence)
    test = data.load_mnist("test", mnist_dir, download=False)
    flagged = [r.uncertain for r in reader.read(test.images)]
    assert np.mean(flagged) <= 0.01  # 0.67 % (the digit model alone: 0.55 %); of the first 2,000, harder, 1.15 % (1.05 %)


def test_small_scans_are_read_in_three_views_and_read_better():
    """scikit-learn's 1,797 digits from 43 writers, 8x8 scans as dark ink on paper: read at >= 97 %."""
    from sklearn.datasets import load_digits

    from digitrec import images

    scans = load_digits()
    pages = list(np.round(255 - scans.images * 255 / 16).astype(np.uint8))
    reader = digitrec.load()
    assert np.mean(reader.predict(pages) == scans.target) >= 0.97  # 97.2 %; read in one view, 96.9 %
    one_view = np.stack([images.to_mnist(page) for page in pages])
    assert np.mean(reader.predict(one_view) == scans.target) < np.mean(reader.predict(pages) == scans.target)
    read = reader.read(pages[:50])
    assert [r.digit for r in read] == list(reader.predict(pages[:50]))  # read() and predict() agree
    # only a scan that one view leaves in doubt is read in the others: a sure one reads as its one view
    one = reader.probabilities(one_view[:200]).max(axis=1)
    sure, unsure = int(np.argmax(one >= predict.VIEWS_BELOW)), int(np.argmax(one < predict.VIEWS_BELOW))
    assert np.array_equal(reader.predict_proba(pages[sure]), reader.probabilities(one_view[sure][None]))
    assert not np.allclose(reader.predict_proba(pages[unsure]), reader.probabilities(one_view[unsure][None]))
    assert not images.Page.of(np.full((100, 100), 255, np.uint8)).scan and images.Page.of(pages[0]).scan


def test_touching_digits_are_cut_where_the_model_reads_them_best(mnist_dir: Path):
    """100 pairs of MNIST's test digits overlapping by 6 px: 41 of them touch, too narrow together for a rule of thumb."""
    from digitrec.images import Page

    test = data.load_mnist("test", mnist_dir, download=False)
    pages, truths = [], []
    for first, second in zip(range(0, 200, 2), range(1, 200, 2), strict=True):
        pair = np.zeros((28, 34), np.uint8)
        pair[:, :20] = test.images[first][:, 4:24]
        pair[:, 14:] = np.maximum(pair[:, 14:], test.images[second][:, 4:24])
        pages.append(np.kron(255 - pair, np.ones((4, 4), np.uint8)))  # dark ink on paper, 112 px high
        truths.append(f"{test.labels[first]}{test.labels[second]}")
    right = [r.number == truth for r, truth in zip(digitrec.load().read(pages, multi=True), truths, strict=True)]
    touching = [i for i, page in enumerate(pages) if Page.of(page).count == 1]
    assert len(touching) >= 30
    assert sum(right) >= 80 and sum(right[i] for i in touching) >= len(touching) / 2  # a rule of thumb: 62 and 4 of 41


def test_the_row_reader_counts_the_digits_of_a_number_where_cuts_cannot(mnist_dir: Path):
    """60 rows of three of MNIST's test digits, each overlapping the next by 8 px: read uncut, not only cut."""
    test = data.load_mnist("test", mnist_dir, download=False)
    pages, truths = [], []
    for first in range(200, 380, 3):
        row = np.zeros((28, 44), np.uint8)
        for k in range(3):
            row[:, 12 * k : 12 * k + 20] = np.maximum(row[:, 12 * k : 12 * k + 20], test.images[first + k][:, 4:24])
        pages.append(np.kron(255 - row, np.ones((4, 4), np.uint8)))
        truths.append("".join(str(test.labels[first + k]) for k in range(3)))
    reader = digitrec.load()
    if reader.row_reader is None:
        pytest.skip("this checkout has no bundled row reader")
    both = reader.read(pages, multi=True)
    cut_only = Predictor(reader.engine, row_reader=None).read(pages, multi=True)
    right = sum(r.number == truth for r, truth in zip(both, truths, strict=True))
    right_cut = sum(r.number == truth for r, truth in zip(cut_only, truths, strict=True))
    assert right >= 42 and right >= right_cut + 8  # 48 against 33 with the bundled readers
    for reading in both:  # every digit carries its confidence, whichever reader read it
        assert len(reading.digits) == len(reading.number) and all(0 < d.confidence <= 1 for d in reading.digits)
        assert reading.confidence == pytest.approx(np.prod([d.confidence for d in reading.digits]))


def test_real_handwritten_numbers_are_read_exactly():
    """numbers-dev: 26 numbers of 2 to 6 digits from other people's repositories (pencil on ruled paper, shadows, dark paper)."""
    numbers = _images(NUMBERS)
    readings = digitrec.load().read(numbers, multi=True)
    wrong = [r for r, path in zip(readings, numbers, strict=True) if r.number != path.name.split("_")[0]]
    # 25 of 26, issue 12's target of 95 %: 6789 is read 0789 by the row reader. The digit model alone reads 280272's 0, cut in two
    # where it touches the 8, as a 7 at 69 %; pooled with the row reader's sure 0, it is read right.
    assert len(wrong) <= 1
    # never silently wrong: 6789's 6 is cut in two, so the digit model counts 5 digits where the row reader counts 4
    assert all(r.uncertain and "digits, the row reader" in r.reason for r in wrong)


def test_two_readers_sure_of_different_digits_leave_the_digit_unsure():
    sure = np.eye(10, dtype=np.float32)  # each row: one digit at exactly 1, the others at exactly 0
    unsure = np.full((10, 10), 0.1, np.float32)
    assert (predict._pooled(sure, sure).argmax(axis=1) == np.arange(10)).all()
    assert (predict._pooled(sure, unsure).argmax(axis=1) == np.arange(10)).all()  # the sure one decides
    split = predict._pooled(sure[:1], sure[7:8])[0]
    assert np.isfinite(split).all() and split[0] == split[7] == np.float32(0.5)


def test_a_ruled_line_under_a_number_joins_no_digits():
    numbers = [p for p in _images(NUMBERS) if p.name.startswith(("948_", "2072_"))]  # the page's edge runs through their feet
    assert [r.number for r in digitrec.load().read(numbers, multi=True)] == [p.name.split("_")[0] for p in numbers]


def _in_boxes(digits: np.ndarray, tilt: float = 0.0, size: int = 84) -> np.ndarray:
    """MNIST digits written side by side in a row of printed boxes (a form's field), dark ink on white, as a photo
    tilted by ``tilt``; enlarged to ``size`` px, 100 or more, a digit touches its box."""
    cell, margin = 100, 12
    page = np.full((130, len(digits) * cell + 2 * margin), 245, np.float32)
    top = 65 - size // 2
    for i, digit in enumerate(digits):
        left = margin + i * cell + 50 - size // 2
        page[top : top + size, left : left + size] -= cv2.resize(digit, (size, size)).astype(np.float32) * 0.85
    for x in range(margin, page.shape[1] - margin + 1, cell):  # the sides, 3 px wide, and the lines along the top and bottom
        page[margin:-margin, x - 1 : x + 2] = 20
    page[margin : margin + 3, margin:-margin] = page[-margin - 3 : -margin, margin:-margin] = 20
    turn = cv2.getRotationMatrix2D((page.shape[1] / 2, page.shape[0] / 2), tilt, 1.0)
    return cv2.warpAffine(np.clip(page, 0, 255).astype(np.uint8), turn, page.shape[::-1], borderValue=245)


def _share_right(readings: list, labels: np.ndarray) -> float:
    return float(np.mean([r.digit == label for r, label in zip(readings, labels, strict=True)]))


def test_a_digit_written_in_a_printed_box_is_read_without_the_box(mnist_dir: Path, tmp_path: Path):
    test = data.load_mnist("test", mnist_dir, download=False)
    reader = digitrec.load()
    for tilt, size in ((0.0, 84), (4.0, 84), (0.0, 112)):  # apart from the box, tilted, touching it
        paths = []
        for i in range(40):
            paths.append(tmp_path / f"box-{tilt}-{size}-{i}.png")
            Image.fromarray(_in_boxes(test.images[i : i + 1], tilt, size)).save(paths[-1])
        read = reader.read(paths)
        assert _share_right(read, test.labels[:40]) >= 0.9  # 14-45 % with the box
        assert np.mean([r.uncertain for r in read]) <= 0.1
    numbers = [_in_boxes(test.images[i : i + 3]) for i in range(0, 60, 3)]
    truths = ["".join(map(str, test.labels[i : i + 3])) for i in range(0, 60, 3)]
    assert np.mean([r.number == truth for r, truth in zip(reader.read(numbers, multi=True), truths, strict=True)]) >= 0.9


def _on_pages(digits: np.ndarray, sheet: np.ndarray | None = None, marks: Callable[[np.ndarray], object] | None = None) -> list[np.ndarray]:
    """MNIST digits at 84 px, dark ink in the middle of a 140 px page (``sheet``: its paper), ``marks`` drawn on each."""
    pages = []
    for digit in digits:
        page = np.full((140, 140), 245, np.float32) if sheet is None else sheet.copy()
        page[28:112, 28:112] -= cv2.resize(digit, (84, 84)).astype(np.float32) * 0.85
        if marks is not None:
            marks(page)
        pages.append(np.clip(page, 0, 255).astype(np.uint8))
    return pages


def test_a_line_under_a_digit_is_no_part_of_it(mnist_dir: Path):
    """An underline (or the line of a form's field) apart from the digit is left out; read with it, 29 % were right."""
    test = data.load_mnist("test", mnist_dir, download=False)

    def underline(page: np.ndarray) -> None:
        page[118:121, 20:120] = 20

    assert _share_right(digitrec.load().read(_on_pages(test.images[:40], marks=underline)), test.labels[:40]) >= 0.95


def test_the_lines_of_squared_paper_are_no_part_of_a_digit(mnist_dir: Path):
    """Digits on squared paper whose lines are a third as dark as the ink: 18 % were read with the lines; a blank sheet has no ink."""
    test = data.load_mnist("test", mnist_dir, download=False)
    sheet = np.full((140, 140), 245, np.float32)
    sheet[4::22] = sheet[:, 4::22] = 170
    reader = digitrec.load()
    read = reader.read(_on_pages(test.images[:40], sheet))
    assert _share_right(read, test.labels[:40]) >= 0.9
    assert np.mean([r.uncertain for r in read]) <= 0.15
    assert reader.read(sheet.astype(np.uint8))[0].reason.startswith("no digit found: only lines")


def test_a_ring_drawn_around_a_digit_is_no_part_of_it(mnist_dir: Path):
    """A digit circled on a page is read without the circle; read with it, 12 % were right, most of them confidently wrong."""
    test = data.load_mnist("test", mnist_dir, download=False)

    def ring(page: np.ndarray) -> None:
        cv2.ellipse(page, (70, 70), (62, 58), 0, 0, 360, 20, 3)

    assert _share_right(digitrec.load().read(_on_pages(test.images[:40], marks=ring)), test.labels[:40]) >= 0.95


def test_straight_lines_that_frame_no_digit_are_ink():
    """A 0 drawn as a rectangle, a 4 of straight lines and a 0 with a dot in it are read as drawn; an empty grid drawn on
    the page is not taken for a box around nothing."""
    from digitrec.images import Page

    zero = np.full((140, 140), 255, np.uint8)
    zero[20:120, 40:44] = zero[20:120, 96:100] = zero[20:24, 40:100] = zero[116:120, 40:100] = 0
    four = np.full((140, 140), 255, np.uint8)
    four[20:120, 90:95] = four[80:85, 30:110] = 0
    four[20:80, 30:35] = 0
    grid = np.full((140, 140), 255, np.uint8)  # drawn on the page, not across it as squared paper's lines are
    for x in range(30, 111, 40):
        grid[30:111, x : x + 2] = grid[x : x + 2, 30:111] = 0
    dotted = np.full((140, 140), 255, np.uint8)  # a 0 with a dot in it: a ring around ink too small to be a digit
    cv2.ellipse(dotted, (70, 70), (35, 55), 0, 0, 360, 0, 3)
    dotted[65:75, 65:75] = 0
    for page in (zero, four, grid, dotted):
        ink = Page.of(page).ink
        assert ink.keep[ink.components.labels].sum() == (page == 0).sum()  # every stroke kept


def test_a_page_reads_as_the_file_it_was_decoded_from(tmp_path: Path):
    from digitrec.images import Page

    path = tmp_path / "five.png"
    Image.fromarray(printed_page("5")).save(path)
    reader = digitrec.load()
    for multi in (False, True):
        (from_page,), (from_file,) = reader.read([Page.of(path)], multi=multi), reader.read([path], multi=multi)
        assert from_page.source == from_file.source == str(path)
        assert from_page.to_dict() == from_file.to_dict() and np.array_equal(from_page.seen, from_file.seen)
    assert np.array_equal(reader.predict_proba([Page.of(path)]), reader.predict_proba([path]))


def test_an_empty_batch_gives_empty_answers_of_the_right_shape():
    reader = digitrec.load()
    for empty in (np.zeros((0, 28, 28), np.uint8), np.zeros((0, 784), np.float32), []):
        assert reader.predict(empty).shape == (0,)
        assert reader.predict_proba(empty).shape == (0, 10)
    assert reader.read([]) == []


def test_every_format_it_names_is_read_from_a_folder(synthetic_run: Path, tmp_path: Path):
    from digitrec.choices import IMAGE_FORMATS

    digit = synthetic_digits(1, seed=6)[0][0]
    for name, suffixes in IMAGE_FORMATS.items():
        Image.fromarray(np.pad(digit, 2)).convert("RGB").save(tmp_path / f"seven{suffixes[0]}", format=name.upper())
    result = run_cli("predict", str(synthetic_run), str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    read = sorted(Path(json.loads(line)["source"]).suffix for line in result.stdout.splitlines())
    assert read == sorted(suffixes[0] for suffixes in IMAGE_FORMATS.values())
