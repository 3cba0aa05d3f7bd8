"""Metrics of predictions on labelled digits: accuracy, loss, precision/recall/F1, per class, confusion matrix.

NumPy only, so that evaluating an exported model never has to load PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int = 10) -> np.ndarray:
    """``[true, predicted]`` counts."""
    return np.bincount(labels * classes + predicted, minlength=classes * classes).reshape(classes, classes)


@dataclass
class Evaluation:
    labels: np.ndarray  # (N,) int64
    probabilities: np.ndarray  # (N, 10) float
    loss: float  # mean cross-entropy

    @classmethod
    def from_logits(cls, logits: np.ndarray, labels: np.ndarray) -> Evaluation:
        log_probabilities = log_softmax(np.asarray(logits, dtype=np.float64))
        loss = float(-log_probabilities[np.arange(len(labels)), labels].mean()) if len(labels) else 0.0
        return cls(np.asarray(labels), np.exp(log_probabilities), loss)

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(1)

    @property
    def confidence(self) -> np.ndarray:
        return self.probabilities.max(1)

    @property
    def confusion(self) -> np.ndarray:
        return confusion_matrix(self.labels, self.predicted)

    @property
    def accuracy(self) -> float:
        return float((self.predicted == self.labels).mean()) if len(self.labels) else 0.0

    @property
    def errors(self) -> np.ndarray:
        """Indices of misclassified images, most confident mistakes first."""
        wrong = np.flatnonzero(self.predicted != self.labels)
        return wrong[np.argsort(-self.confidence[wrong], kind="stable")]

    def metrics(self) -> dict[str, Any]:
        """Everything as plain numbers, ready for JSON."""
        cm = self.confusion.astype(np.float64)
        true_positive = np.diag(cm)
        support = cm.sum(1)
        predicted_count = cm.sum(0)
        precision = np.divide(true_positive, predicted_count, out=np.zeros(10), where=predicted_count > 0)
        recall = np.divide(true_positive, support, out=np.zeros(10), where=support > 0)
        f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(10), where=precision + recall > 0)
        present = support > 0  # macro averages over the classes that occur
        per_class = {
            str(d): {
                "precision": float(precision[d]),
                "recall": float(recall[d]),
                "f1": float(f1[d]),
                "accuracy": float(recall[d]),  # a class's accuracy is the share of it recognised
                "support": int(support[d]),
            }
            for d in range(10)
        }
        return {
            "accuracy": self.accuracy,
            "loss": self.loss,
            "precision": float(precision[present].mean()) if present.any() else 0.0,
            "recall": float(recall[present].mean()) if present.any() else 0.0,
            "f1": float(f1[present].mean()) if present.any() else 0.0,
            "count": len(self.labels),
            "errors": int((self.predicted != self.labels).sum()),
            "per_class": per_class,
            "confusion_matrix": self.confusion.tolist(),
        }


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T that makes ``softmax(logits / T)`` calibrated: least cross-entropy on these digits.

    Label smoothing leaves a model under-confident (the default model says 90 % where it is right
    99.7 % of the time); dividing by T restores confidences that can be read as probabilities.
    The loss is convex in 1/T, so a golden-section search over log T in [0.05, 20] finds it.
    """
    logits = np.asarray(logits, dtype=np.float64)
    rows = np.arange(len(labels))

    def loss(log_t: float) -> float:
        return float(-log_softmax(logits / np.exp(log_t))[rows, labels].mean())

    low, high = np.log(0.05), np.log(20.0)
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(40):
        a, b = high - ratio * (high - low), low + ratio * (high - low)
        if loss(a) < loss(b):
            high = b
        else:
            low = a
    return float(np.exp((low + high) / 2))
