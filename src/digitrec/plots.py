"""Figures as PNG files: training curves, confusion matrix, digit grids, class histogram, comparisons of runs.

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
from digitrec.mnist_format import FIELD

DIVERGED = 0.5  # accuracy under which a run is taken to have learned nothing: comparisons scale to the others


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
        if history and f"test_{metric}" in history[0]:
            ax.plot(epochs, [row[f"test_{metric}"] for row in history], "g:o", markersize=3, label=f"test {label} (watched only)")
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
    cell_h, cell_w = FIELD + 22, FIELD + 6  # room under each digit for a two-line caption
    mosaic = np.zeros((rows * cell_h, columns * cell_w))
    fig, ax = plt.subplots(figsize=(columns * 1.2, rows * 1.6 + (0.4 if title else 0)))
    for i in range(count):
        top, left = (i // columns) * cell_h, (i % columns) * cell_w + 3
        mosaic[top : top + FIELD, left : left + FIELD] = images[i]
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
    """Loss and accuracy of several runs overlaid, one colour each: validation solid, training dashed, a watched test set dotted."""
    fig, (loss_ax, acc_ax) = plt.subplots(2, 1, figsize=(9, 8), sharex=True)
    colours = plt.get_cmap("tab10" if len(histories) <= 10 else "tab20").colors
    for index, (label, history) in enumerate(histories.items()):
        colour = colours[index % len(colours)]
        epochs = [row["epoch"] for row in history]
        for split, style in (("train", "--"), ("val", "-"), ("test", ":")):
            if history and f"{split}_accuracy" in history[0]:
                name = f"{label} ({ {'train': 'training', 'val': 'validation', 'test': 'test, watched'}[split]})"
                line = {"color": colour, "marker": "o", "markersize": 3, "label": name}
                loss_ax.plot(epochs, [row[f"{split}_loss"] for row in history], style, **line)
                acc_ax.plot(epochs, [row[f"{split}_accuracy"] for row in history], style, **line)
    for ax, name in ((loss_ax, "loss (log scale)"), (acc_ax, "accuracy")):
        ax.set_ylabel(name)
        ax.grid(alpha=0.3, which="both")
    loss_ax.set_yscale("log")
    accuracies = [row[key] for history in histories.values() for row in history for key in row if key.endswith("_accuracy")]
    learned = [value for value in accuracies if value >= DIVERGED]
    if learned and len(learned) < len(accuracies):  # a run that learned nothing would squash the others' curves
        acc_ax.set_ylim(min(learned) - 0.005, 1.0 + 0.002)
        acc_ax.set_title(f"runs under {DIVERGED:.0%} accuracy are below the axis", fontsize=8)
    loss_ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    acc_ax.set_xlabel("epoch")
    acc_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _save(fig, path)


def per_class_accuracy(accuracies: dict[str, Sequence[float]], path: str | Path) -> Path:
    """Each run's accuracy on each digit, side by side: one row per run, one column per digit, the number in each cell."""
    names = list(accuracies)
    values = np.array([accuracies[name] for name in names], dtype=np.float64) * 100
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.42 * len(names)))
    learned = values[values >= DIVERGED * 100]  # a run that learned nothing would wash out every other colour
    low = min(float(learned.min()) if learned.size else 0.0, 99.0)
    ax.imshow(values, cmap="RdYlGn", vmin=low, vmax=100, aspect="auto")
    ax.set_xticks(range(values.shape[1]), [str(d) for d in range(values.shape[1])])
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("digit")
    for (row, col), value in np.ndenumerate(values):
        ax.text(col, row, f"{value:.1f}", ha="center", va="center", fontsize=8)
    ax.set_title("Accuracy per digit (%)")
    return _save(fig, path)


def accuracy_against_time(points: dict[str, tuple[float, float]], path: str | Path) -> Path:
    """Test accuracy (%) against training time (s), one labelled point per run: what each point of accuracy costs."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, (seconds, accuracy) in points.items():
        ax.plot(seconds, accuracy * 100, "o")
        ax.annotate(name, (seconds, accuracy * 100), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("training time on this machine (s, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)


def feature_maps(maps: np.ndarray, path: str | Path, title: str = "") -> Path:
    """A layer's feature maps ``(C, H, W)`` as a grid, each in its own range: brighter where the map responds more."""
    count, height, width = maps.shape
    columns = min(count, 16)
    rows = math.ceil(count / columns)
    mosaic = np.full((rows * (height + 1) - 1, columns * (width + 1) - 1), np.nan)
    for i, plane in enumerate(maps):
        low, high = float(plane.min()), float(plane.max())
        top, left = (i // columns) * (height + 1), (i % columns) * (width + 1)
        mosaic[top : top + height, left : left + width] = (plane - low) / (high - low) if high > low else 0.0
    fig, ax = plt.subplots(figsize=(min(16, columns * 0.9) + 0.2, rows * 0.9 * height / width + (0.5 if title else 0.1)))
    ax.imshow(np.ma.masked_invalid(mosaic), cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def attributions(digits: np.ndarray, maps: np.ndarray, captions: Sequence[str], path: str | Path) -> Path:
    """One row per digit: what the model saw, each pixel's attribution (red: for the chosen class, blue: against), both overlaid.

    The rows are tiled into one image on one axes, as in :func:`digit_grid`: three subplots a digit took 0.8 s for eight.
    """
    heat = matplotlib.colormaps["bwr"]
    cell, gap, caption_room = FIELD, 10, 9  # pixels of a digit: the gaps and margins leave room for a caption wider than its digit
    mosaic = np.ones((len(digits) * (cell + caption_room), 3 * cell + 4 * gap, 3))
    fig, ax = plt.subplots(figsize=(7.5, 7.5 * mosaic.shape[0] / mosaic.shape[1]))
    for row, (digit, attribution, caption) in enumerate(zip(digits, maps, captions, strict=True)):
        bound = float(np.abs(attribution).max()) or 1.0
        seen = np.repeat(digit[..., None] / 255.0, 3, axis=2)
        coloured = heat((attribution + bound) / (2 * bound))[..., :3]
        top = row * (cell + caption_room) + caption_room
        for column, (image, name) in enumerate(((seen, caption), (coloured, "attribution"), (0.4 * seen + 0.6 * coloured, "both"))):
            left = gap + column * (cell + gap)
            mosaic[top : top + cell, left : left + cell] = image
            ax.text(left + cell / 2, top - 1, name, ha="center", va="bottom", fontsize=9)
    ax.imshow(mosaic, interpolation="nearest")
    ax.axis("off")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.99)
    return _save(fig, path, tight=False)
