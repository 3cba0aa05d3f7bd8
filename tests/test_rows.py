"""The row reader: what it is given (a row of ink, fitted), how its output becomes digits, and `digitrec train --model rows`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import flagged_one, mnist_npz_file, refuses_other_models, run_cli
from PIL import Image

from digitrec import data, images, rows
from digitrec.rows import BLANK, RowReader, decode, digit_frames, sequence_probability
from digitrec.synthetic import rows as synthetic_rows


def _frames(*classes: int, sure: float = 8.0) -> np.ndarray:
    """Logits whose likeliest class at each frame is the one given."""
    logits = np.zeros((BLANK + 1, len(classes)), np.float32)
    logits[list(classes), range(len(classes))] = sure
    return logits


def test_a_digit_is_a_run_of_frames_and_a_blank_parts_two_equal_digits():
    _ = BLANK
    logits = _frames(_, 3, 3, _, 3, 7, 7, _, _)
    logits[3, 2] = 9.0  # the first 3 is surest at its second frame
    assert digit_frames(logits) == [2, 4, 5]
    probabilities = decode(logits)
    assert probabilities.shape == (3, 10) and list(probabilities.argmax(axis=1)) == [3, 3, 7]
    assert np.allclose(probabilities.sum(axis=1), 1.0)


def test_a_row_of_blanks_holds_no_digits_and_a_temperature_softens_them():
    assert decode(_frames(BLANK, BLANK)).shape == (0, 10)
    sharp, soft = decode(_frames(BLANK, 4)), decode(_frames(BLANK, 4), temperature=4.0)
    assert sharp[0, 4] > soft[0, 4] > 0.1


def test_the_probability_of_a_reading_sums_all_its_alignments():
    import torch

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(BLANK + 1, 12)) * 3
    for digits in ([], [7], [3, 3], [3, 3, 5, 3], [1, 2, 3]):  # CTC's own loss is minus the log of the same sum
        frames = torch.log_softmax(torch.tensor(logits.T / 1.5), dim=-1)[:, None]
        loss = torch.nn.functional.ctc_loss(frames, torch.tensor([digits or [0]]), torch.tensor([12]), torch.tensor([len(digits)]),
                                            blank=BLANK, reduction="sum")
        assert sequence_probability(logits, digits, temperature=1.5) == pytest.approx(float(torch.exp(-loss)), rel=1e-9)
    short = logits[:, :2]  # two frames hold no, one or two digits, and nothing else
    readings = [[], *([d] for d in range(10)), *([a, b] for a in range(10) for b in range(10))]
    assert sum(sequence_probability(short, digits) for digits in readings) == pytest.approx(1.0)


def test_a_row_is_fitted_to_the_readers_height_whatever_its_size():
    ink = np.zeros((90, 500), np.float32)
    ink[20:70, 40:400] = 1.0
    row = images.fit_row(ink)
    assert row.shape[0] == images.ROW_HEIGHT and row.shape[1] % images.ROW_STEP == 0
    inked_rows = np.flatnonzero(row.max(axis=1) > 0.5)
    assert inked_rows[-1] - inked_rows[0] + 1 == images.BOX
    assert abs((row.shape[1] - 2 * images.ROW_MARGIN) - 360 * images.BOX / 50) <= images.ROW_STEP  # its aspect is kept
    assert not images.fit_row(np.zeros((10, 10), np.float32)).any()


def test_the_row_keeps_a_numbers_digits_and_drops_the_rule_under_them():
    page = np.full((120, 400), 255, np.uint8)
    for left in (40, 140, 240):  # three bars, 60 px high
        page[30:90, left : left + 12] = 0
    page[95:98, 10:390] = 0  # a ruled line, longer than half the row
    row = images.Page.of(page).row
    assert row is not None and row.shape[0] == images.ROW_HEIGHT
    inked = np.flatnonzero(row.max(axis=1) > 0.5)
    assert inked[-1] - inked[0] + 1 == images.BOX  # the bars alone fill the height: the rule is gone
    assert images.Page.of(np.full((120, 400), 255, np.uint8)).row is None


def test_the_bundled_row_reader_loads_and_reads_a_row():
    reader = rows.bundled()
    if reader is None:
        pytest.skip("this checkout has no bundled row reader")
    assert reader.meta["kind"] == rows.KIND and 0.2 < reader.temperature < 5
    page = np.full((100, 100), 255, np.uint8)
    page[20:80, 45:55] = 0  # a 1
    assert [int(d) for d in reader.read(images.Page.of(page).row).argmax(axis=1)] == [1]


def test_the_bundled_row_reader_reads_ones_written_with_a_european_flag(mnist_dir: Path):
    """As the digit model does: pooled with it, a row reader that reads a flagged 1 as a 7 spoils a European writer's numbers."""
    reader = rows.bundled()
    if reader is None:
        pytest.skip("this checkout has no bundled row reader")
    test = data.load_mnist("test", mnist_dir, download=False)
    read = [reader.read(images.Page.of(flagged_one(one, 0.33)).row) for one in test.images[test.labels == 1][-200:]]
    assert np.mean([len(r) == 1 and r[0].argmax() == 1 for r in read]) >= 0.9  # 0.985; before bf45ebd (MNIST alone): 0.415


def test_only_a_row_reader_is_taken_for_one(tmp_path: Path):
    refuses_other_models(RowReader, "row reader", tmp_path)


def test_a_row_reader_trained_by_digitrec_train_is_read_by_the_package_and_predict(tmp_path: Path, mnist_dir: Path):
    npz = mnist_npz_file(tmp_path / "digits.npz", mnist_dir, 480)
    trained = run_cli("train", "--model", "rows", "--data", f"npz:{npz}", "--epochs", "1", "--out", str(tmp_path / "run"), "--quiet")
    assert trained.returncode == 0, trained.stderr
    reader = RowReader(tmp_path / "run")  # a run directory is read through its export
    assert reader.meta["kind"] == rows.KIND and reader.meta["training"]["model"] == "rows" and 0.1 < reader.temperature < 10
    row, text = synthetic_rows.row(np.random.default_rng(0), *_mnist_digits(mnist_dir))
    assert row.shape[0] == images.ROW_HEIGHT and 1 <= len(text) <= synthetic_rows.MOST_DIGITS
    assert reader.logits(row).shape == (BLANK + 1, row.shape[1] // 2)  # its width is the row's, whatever it is
    page = tmp_path / "page.png"
    Image.fromarray(np.full((60, 120), 255, np.uint8)).save(page)
    assert run_cli("predict", "--multi", "--rows", str(tmp_path / "run"), str(page)).returncode == 0
    as_digits = run_cli("predict", str(tmp_path / "run"), str(page))
    assert as_digits.returncode == 2 and "a row reader, not a digit model" in as_digits.stderr


def _mnist_digits(mnist_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    test = data.load_mnist("test", mnist_dir, download=False)
    return test.images[:100], test.labels[:100]
