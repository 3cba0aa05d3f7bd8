"""Outlier exposure: synthetic non-digits, and a model that learns from them to be unsure of what is no digit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from digitrec import data, outliers, plans, predict, training


def test_a_bank_is_drawn_from_its_seed_alone():
    first, again, other = (outliers.bank(120, seed) for seed in (0, 0, 1))
    assert first.shape == (120, 28, 28) and first.dtype == torch.uint8
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_outliers_are_laid_out_like_mnist_digits():
    bank = outliers.bank(300, 0).numpy()
    for image in bank:
        rows, cols = np.flatnonzero(image.max(axis=1) > 0), np.flatnonzero(image.max(axis=0) > 0)
        assert image.max() > 200  # full ink somewhere
        assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 22  # within MNIST's 20 px box (and its rim)
    assert len({image.tobytes() for image in bank}) == len(bank)


def test_a_model_trained_with_outliers_is_less_sure_of_them(tmp_path: Path, mnist_dir: Path):
    train = data.load_mnist("train", mnist_dir, download=False)
    x, y = train.images[:6000], train.labels[:6000]
    np.savez(tmp_path / "digits.npz", x_train=x, y_train=y, x_test=x[:10], y_test=y[:10])
    unseen = outliers.bank(200, seed=99).numpy()  # drawn apart from the training bank
    confidence = {}
    for weight in (0.0, 1.0):
        run = training.train(plans.resolve("fast", outliers=weight, epochs=2), data_spec=f"npz:{tmp_path / 'digits.npz'}",
                             out=tmp_path / f"w{weight}", progress=False, log=lambda line: None)
        confidence[weight] = float(predict.load(run.run_dir).predict_proba(unseen).max(axis=1).mean())
    # over 20 seeds (one thread) the mean confidence fell by 0.42-0.56 (mean 0.49, sd 0.04): from 0.72-0.85 to 0.27-0.33
    assert confidence[1.0] < confidence[0.0] - 0.15
