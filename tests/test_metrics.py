"""Metrics: what a student compares models by."""

from __future__ import annotations

import numpy as np
import pytest

from digitrec.metrics import Evaluation, confusion_matrix


def _evaluation(labels: list[int], predicted: list[int]) -> Evaluation:
    probabilities = np.eye(10)[predicted] * 0.9 + 0.01
    return Evaluation(np.array(labels), probabilities, loss=0.5)


def test_confusion_matrix_counts_true_rows_against_predicted_columns():
    cm = confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]))
    assert cm[0, 0] == 1 and cm[0, 1] == 1 and cm[1, 1] == 1 and cm[2, 2] == 1
    assert cm.sum() == 4


def test_metrics_match_hand_computed_precision_recall_and_f1():
    # class 0: 2 true, 1 found; class 1: 1 true, 1 found + 1 false alarm; class 2: perfect
    metrics = _evaluation([0, 0, 1, 2], [0, 1, 1, 2]).metrics()
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert metrics["per_class"]["0"]["precision"] == pytest.approx(1.0)
    assert metrics["per_class"]["0"]["recall"] == pytest.approx(0.5)
    assert metrics["per_class"]["1"]["precision"] == pytest.approx(0.5)
    assert metrics["per_class"]["1"]["f1"] == pytest.approx(2 / 3)
    # macro averages over the three classes present
    assert metrics["precision"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert metrics["recall"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert metrics["errors"] == 1
    assert metrics["confusion_matrix"][0][1] == 1


def test_errors_are_listed_most_confident_first():
    evaluation = _evaluation([0, 1, 2], [5, 1, 7])
    evaluation.probabilities[2, 7] = 0.99
    assert evaluation.errors.tolist() == [2, 0]


def test_loss_from_logits_is_the_mean_cross_entropy():
    torch = pytest.importorskip("torch")
    logits = np.array([[2.0, -1.0, 0.5] + [0.0] * 7, [30.0, -40.0] + [0.0] * 8], dtype=np.float32)
    labels = np.array([2, 1])
    expected = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)).item()
    evaluation = Evaluation.from_logits(logits, labels)
    assert evaluation.loss == pytest.approx(expected, rel=1e-6)  # stable even where a probability underflows
    assert np.allclose(evaluation.probabilities.sum(1), 1.0)
