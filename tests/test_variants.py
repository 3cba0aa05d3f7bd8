"""Variants MNIST lacks: 1s written with a European flag, drawn onto training digits from the run's seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import flagged_one

from digitrec import data, plans, predict, training, variants


@pytest.fixture
def digits(mnist_dir: Path) -> data.Digits:
    return data.load_mnist("train", mnist_dir, download=False)


def test_flags_go_on_a_share_of_the_ones_alone_chosen_by_the_seed(digits: data.Digits):
    x, y = digits.images[:3000], digits.labels[:3000]
    before = x.copy()
    first, again, other = (variants.flag_ones(x, y, 0.3, seed) for seed in (0, 0, 1))
    changed = np.flatnonzero((first != x).any(axis=(1, 2)))
    assert (y[changed] == 1).all() and len(changed) == round(0.3 * np.count_nonzero(y == 1))
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert np.array_equal(variants.flag_ones(x, y, 0.0, 0), x)
    assert np.array_equal(x, before)  # the caller's digits are left as they were


def test_a_flag_runs_from_the_top_of_the_stroke_down_to_the_left(digits: data.Digits):
    x, y = digits.images[:3000], digits.labels[:3000]
    flagged = variants.flag_ones(x, y, 1.0, 0)
    for old, new in zip(x[y == 1], flagged[y == 1], strict=True):
        added = (new > old) & (new >= variants.INK)
        rows = np.flatnonzero((old >= variants.INK).any(axis=1))
        top_x = np.flatnonzero(old[rows[0]] >= variants.INK).mean()
        ys, xs = np.nonzero(added)
        if len(ys):  # (on a 1 slanted like the flag, the flag may lie within the stroke)
            assert ys.max() <= rows[0] + 0.5 * (rows[-1] - rows[0] + 1)  # in the top half of the digit
            assert xs.mean() < top_x  # left of where the stroke starts
    assert np.mean([(a != b).any() for a, b in zip(x[y == 1], flagged[y == 1], strict=True)]) > 0.9


def test_a_model_trained_with_flagged_ones_reads_them_as_ones(tmp_path: Path, digits: data.Digits):
    x, y = digits.images[:6000], digits.labels[:6000]
    np.savez(tmp_path / "digits.npz", x_train=x, y_train=y, x_test=x[:10], y_test=y[:10])
    unseen = [flagged_one(one, 0.4) for one in digits.images[50000:][digits.labels[50000:] == 1][:200]]  # drawn by OpenCV
    read = {}
    for share in (0.0, 0.3):
        run = training.train(plans.resolve("fast", flagged_ones=share, epochs=2), data_spec=f"npz:{tmp_path / 'digits.npz'}",
                             out=tmp_path / f"s{share}", progress=False, log=lambda line: None)
        read[share] = float(np.mean(predict.load(run.run_dir).predict(unseen) == 1))
    assert read[0.3] > read[0.0] + 0.15  # 0.585 against 0.385 (a small model, two epochs on 6,000 digits)
