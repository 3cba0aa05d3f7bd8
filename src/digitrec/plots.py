"""Figures as PNG files: training curves, confusion matrix, digit grids, class histogram.

Each function takes plain numbers or tensors and a path, writes the PNG and returns the path.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from digitrec.files import atomic_write


def _save(fig: plt.Figure, path: str | Path, tight: bool = True) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight" if tight else None)
    plt.close(fig)
    atomic_write(Path(path), buffer.getvalue())
    return Path(path)


def training_curves(history: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Loss (top) and accuracy (bottom) per epoch, train vs validation."""
    epochs = [row["epoch"] for row in history]
    fig, (loss_ax, acc_ax) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    for ax, metric, label in ((loss_ax, "loss", "loss"), (acc_ax, "accuracy", "accuracy")):
        ax.plot(epochs, [row[f"train_{metric}"] for row in history], "b-o", markersize=3, label=f"training {label}")
        if history and f"val_{metric}" in history[0]:
            ax.plot(epochs, [row[f"val_{metric}"] for row in history], "r-o", markersize=3, label=f"validation {label}")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", shadow=True)
    acc_ax.set_xlabel("epoch")
    acc_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def confusion_matrix(matrix: np.ndarray | list[list[int]], path: str | Path, title: str = "Confusion matrix") -> Path:
    """Counts per (true, predicted) pair; rows are the true digit."""
    cm = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(8, 7))
    shown = ax.imshow(cm, cmap="Reds")
    fig.colorbar(shown, ax=ax)
    threshold = cm.max() / 2
    for true in range(cm.shape[0]):
        for predicted in range(cm.shape[1]):
            count = int(cm[true, predicted])
            ax.text(predicted, true, str(count), ha="center", va="center", fontsize=8,
                    color="white" if count > threshold else "black")
    ax.set_xticks(range(cm.shape[1]))
    ax.set_yticks(range(cm.shape[0]))
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title(title)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.08, top=0.94)
    return _save(fig, path, tight=False)  # a known layout: measuring 100 labels for a tight box took 0.3 s


def digit_grid(images: np.ndarray, captions: Sequence[str], path: str | Path, title: str = "", columns: int = 10) -> Path:
    """A grid of 28x28 digits, each with a caption (label, prediction, confidence).

    The digits are tiled into one image on one axes: a subplot per digit took 1.2 s for 30
    mistakes, most of an evaluation's time.
    """
    count = len(images)
    rows = max(1, math.ceil(count / columns))
    cell_h, cell_w = 28 + 22, 28 + 6  # room under each digit for a two-line caption
    mosaic = np.zeros((rows * cell_h, columns * cell_w))
    fig, ax = plt.subplots(figsize=(columns * 1.2, rows * 1.6 + (0.4 if title else 0)))
    for i in range(count):
        top, left = (i // columns) * cell_h, (i % columns) * cell_w + 3
        mosaic[top : top + 28, left : left + 28] = images[i]
        ax.text(left + 14, top + 30, captions[i], ha="center", va="top", fontsize=7)
    ax.imshow(mosaic, cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.93 if title else 0.99)
    return _save(fig, path, tight=False)


def class_histogram(counts: Sequence[int], path: str | Path, title: str = "Images per class") -> Path:
    fig, ax = plt.subplots(figsize=(8, 5))
    bars = ax.bar(range(len(counts)), counts, color="tab:blue")
    ax.bar_label(bars, fontsize=8)
    ax.set_xticks(range(len(counts)))
    ax.set_xlabel("digit")
    ax.set_ylabel("images")
    ax.set_title(title)
    return _save(fig, path)


def compare_curves(histories: dict[str, Sequence[dict[str, Any]]], path: str | Path) -> Path:
    """Validation (or training) loss and accuracy of several runs, one line each."""
    fig, (loss_ax, acc_ax) = plt.subplots(2, 1, figsize=(9, 8), sharex=True)
    for label, history in histories.items():
        split = "val" if history and "val_accuracy" in history[0] else "train"
        epochs = [row["epoch"] for row in history]
        loss_ax.plot(epochs, [row[f"{split}_loss"] for row in history], "-o", markersize=3, label=f"{label} ({split})")
        acc_ax.plot(epochs, [row[f"{split}_accuracy"] for row in history], "-o", markersize=3, label=f"{label} ({split})")
    for ax, name in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    acc_ax.set_xlabel("epoch")
    acc_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _save(fig, path)
