"""Train the row reader that ships inside the package: a small CNN with CTC that reads a written number uncut.

    python tools/train_rows.py                   # 7,000 steps: about 55 min on one CPU core, 35-46 min on two
    python tools/train_rows.py --steps 200 --out /tmp/rows.onnx   # a quick one, to try the tool

It learns from synthetic rows of 1 to 6 of MNIST's first 50,000 training digits: apart, touching or
overlapping, each digit scaled, stretched, slanted, thickened or thinned, on one baseline with some
jitter; some rows are blurred, speckled, or cut by the thin gap a ruled line leaves when it is taken
out. As the default digit model does, it sees a fifth of the 1s drawn with a European flag
(:func:`digitrec.variants.flag_ones`), which MNIST's writers seldom drew. The last 10,000 training
digits make the held-out rows that fit the temperature of its digits' probabilities and measure it.
MNIST's test digits are never seen.

Writes ``src/digitrec/assets/rows.onnx`` (input ``rows``: float32 ``(N, 1, 28, W)`` from
:attr:`digitrec.images.Page.row`; output ``logits``: ``(N, 11, W / 2)``) with its provenance in its
digitrec metadata. `make rows` runs this.
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import sys
import time
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

from digitrec import data, images, plans, variants
from digitrec.export import write_onnx
from digitrec.metrics import fit_temperature
from digitrec.rows import BLANK, KIND, RowReader, decode, digit_frames

ASSETS = Path(__file__).resolve().parents[1] / "src" / "digitrec" / "assets"
TRAIN_DIGITS = 50_000  # rows are built from MNIST's first 50,000 training digits; the rest are held out
BATCH = 64
MOST_DIGITS = 6


def _crop(ink: np.ndarray) -> np.ndarray:
    rows, cols = np.flatnonzero(ink.max(axis=1) > images.ROW_INK), np.flatnonzero(ink.max(axis=0) > images.ROW_INK)
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] if len(rows) else np.zeros((1, 1), np.float32)


def _slanted(digit: np.ndarray, shear: float) -> np.ndarray:
    height, width = digit.shape
    pad = int(abs(shear) * height) + 1
    matrix = np.float32([[1, shear, pad - shear * height / 2], [0, 1, 0]])
    return _crop(cv2.warpAffine(digit, matrix, (width + 2 * pad + int(abs(shear) * height), height)))


def _styled(rng: np.random.Generator, digit: np.ndarray) -> np.ndarray:
    """One MNIST digit (uint8 28x28) -> its ink (0-1), cropped: thickened or thinned, slanted, scaled and stretched."""
    ink = _crop(digit.astype(np.float32) / 255)
    pen = rng.random()
    if pen < 0.2:
        ink = cv2.dilate(ink, np.ones((2, 2), np.uint8))
    elif pen < 0.3 and min(ink.shape) > 6:
        ink = cv2.erode(ink, np.ones((2, 2), np.uint8))
    if rng.random() < 0.5:
        ink = _slanted(ink, rng.uniform(-0.35, 0.35))
    scale, stretch = rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.2)
    size = (max(1, round(ink.shape[1] * scale * stretch)), max(1, round(ink.shape[0] * scale)))
    return cv2.resize(ink, size, interpolation=cv2.INTER_LINEAR)


def _gap(rng: np.random.Generator, left: np.ndarray, right: np.ndarray) -> int:
    """Pixels between two neighbours: apart (45 %), touching (30 %) or overlapping by up to 40 % of the narrower (25 %)."""
    kind = rng.random()
    if kind < 0.45:
        return int(rng.integers(1, 30))
    if kind < 0.75:
        return int(rng.integers(-3, 1))
    return -int(rng.integers(3, max(4, int(0.4 * min(left.shape[1], right.shape[1])))))


def synthetic_row(rng: np.random.Generator, digits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, str]:
    """A row of 1 to ``MOST_DIGITS`` of these digits as :func:`digitrec.images.fit_row` gives it, and its text."""
    picks = rng.integers(0, len(digits), int(rng.integers(1, MOST_DIGITS + 1)))
    pieces = [_styled(rng, digits[i]) for i in picks]
    gaps = [_gap(rng, a, b) for a, b in itertools.pairwise(pieces)]
    tallest = max(p.shape[0] for p in pieces)
    shifts = [int(rng.integers(-3, 4)) for _ in pieces]
    top = 4 + max(0, -min(shifts))
    canvas = np.zeros((top + tallest + 4 + max(0, max(shifts)), 48 + sum(p.shape[1] for p in pieces) + max(0, sum(gaps))), np.float32)
    x = 4
    for piece, shift, gap in zip(pieces, shifts, [*gaps, 0], strict=True):
        bottom = top + tallest + shift
        region = canvas[bottom - piece.shape[0] : bottom, x : x + piece.shape[1]]
        np.maximum(region, piece[: region.shape[0], : region.shape[1]], out=region)
        x = max(0, x + piece.shape[1] + gap)
    if rng.random() < 0.15:  # a ruled line taken out through the digits leaves a thin gap
        y = int(rng.integers(top + tallest // 3, top + tallest + 1))
        canvas[y : y + int(rng.integers(1, 3))] = 0
    if rng.random() < 0.2:
        canvas = cv2.GaussianBlur(canvas, (3, 3), rng.uniform(0.5, 1.0))
    if rng.random() < 0.2:  # specks the ink finder kept
        for _ in range(int(rng.integers(1, 6))):
            y, x = int(rng.integers(0, canvas.shape[0] - 1)), int(rng.integers(0, canvas.shape[1] - 1))
            canvas[y : y + 2, x : x + 2] = rng.uniform(0.3, 1)
    return images.fit_row(canvas), "".join(str(labels[i]) for i in picks)


def row_batch(rng: np.random.Generator, digits: np.ndarray, labels: np.ndarray, count: int) -> tuple[torch.Tensor, list[str]]:
    """``count`` synthetic rows, padded on the right to the widest: ``(count, 1, 28, W)``, and their texts."""
    made = [synthetic_row(rng, digits, labels) for _ in range(count)]
    x = np.zeros((count, 1, images.ROW_HEIGHT, max(row.shape[1] for row, _ in made)), np.float32)
    for i, (row, _) in enumerate(made):
        x[i, 0, :, : row.shape[1]] = row
    return torch.from_numpy(x), [text for _, text in made]


class RowNet(nn.Module):
    """Six 3x3 convolutions (16, 32, 64 channels; pooled to 7 rows and one column in two), the height collapsed, then
    two 1-D convolutions over the columns (5 wide each: each column sees about two digits either side) and 11 classes."""

    def __init__(self) -> None:
        super().__init__()

        def conv(into: int, out: int, kernel: int | tuple[int, int] = 3, padding: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(into, out, kernel, padding=padding, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(*conv(1, 16), *conv(16, 16), nn.MaxPool2d(2), *conv(16, 32), *conv(32, 32),
                                      nn.MaxPool2d((2, 1)), *conv(32, 64), *conv(64, 64), *conv(64, 128, (7, 1), 0))
        self.columns = nn.Sequential(nn.Conv1d(128, 128, 5, padding=2), nn.ReLU(inplace=True),
                                     nn.Conv1d(128, 128, 5, padding=2), nn.ReLU(inplace=True), nn.Conv1d(128, BLANK + 1, 1))

    def forward(self, rows: torch.Tensor) -> torch.Tensor:  # (N, 1, 28, W) -> (N, 11, W / 2)
        return self.columns(self.features(rows).squeeze(2))


def train(steps: int, seed: int, digits: np.ndarray, labels: np.ndarray, log: bool = True) -> RowNet:
    """CTC on fresh synthetic rows every step: AdamW, one cycle up to 2e-3."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = RowNet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    ctc = nn.CTCLoss(blank=BLANK, zero_infinity=True)
    started = time.perf_counter()
    for step in range(steps):
        model.train()
        x, texts = row_batch(rng, digits, labels, BATCH)
        log_probs = F.log_softmax(model(x), dim=1).permute(2, 0, 1)  # (T, N, 11), as CTCLoss takes it
        targets = torch.tensor([int(c) for text in texts for c in text])
        loss = ctc(log_probs, targets, torch.full((BATCH,), log_probs.shape[0]), torch.tensor([len(t) for t in texts]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if log and (step % 500 == 0 or step == steps - 1):
            print(f"step {step + 1}/{steps}  CTC loss {loss.item():.4f}  {time.perf_counter() - started:.0f} s", flush=True)
    return model.eval()


def held_out_logits(model: RowNet, digits: np.ndarray, labels: np.ndarray, count: int) -> tuple[list[np.ndarray], list[str]]:
    """The model's logits for ``count`` synthetic rows of held-out digits (the same rows every time), and their texts."""
    rng = np.random.default_rng(12345)
    made = [synthetic_row(rng, digits, labels) for _ in range(count)]
    with torch.no_grad():
        return [model(torch.from_numpy(row)[None, None])[0].numpy() for row, _ in made], [text for _, text in made]


def calibrate(found: list[np.ndarray], texts: list[str]) -> float:
    """The temperature for the digits' probabilities, fitted on the held-out rows read with the right number of digits."""
    chosen, truth = [], []
    for logits, text in zip(found, texts, strict=True):
        frames = digit_frames(logits)
        if len(frames) == len(text):
            chosen += [logits[:BLANK, t] for t in frames]
            truth += [int(c) for c in text]
    return fit_temperature(np.array(chosen), np.array(truth)) if chosen else 1.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=7_000, help="training steps of 64 rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="PyTorch's threads (default: one per core)")
    parser.add_argument("--digits", type=int, default=60_000, help="use only MNIST's first this many training digits (to try the tool)")
    parser.add_argument("--held-out", type=int, default=2_000, help="held-out synthetic rows to calibrate and measure on")
    parser.add_argument("--flagged-ones", type=float, default=plans.PRESETS[plans.DEFAULT].recipe.flagged_ones,
                        help="share of the 1s drawn with a European flag (default: the default recipe's)")
    parser.add_argument("--out", type=Path, default=ASSETS / "rows.onnx")
    args = parser.parse_args(argv)
    if not 0 <= args.flagged_ones <= 1:  # (NaN fails too)
        parser.error(f"--flagged-ones: must be a share in [0, 1], got {args.flagged_ones}")
    if args.threads:
        torch.set_num_threads(args.threads)
    train_set = data.load("mnist", "train")
    split = min(TRAIN_DIGITS, args.digits * 5 // 6)
    labels = train_set.labels[: args.digits]
    mnist = variants.flag_ones(train_set.images[: args.digits], labels, args.flagged_ones, args.seed), labels
    started = time.perf_counter()
    model = train(args.steps, args.seed, mnist[0][:split], mnist[1][:split])
    seconds = time.perf_counter() - started
    found, texts = held_out_logits(model, mnist[0][split:], mnist[1][split:], args.held_out)
    temperature = calibrate(found, texts)
    exact = float(np.mean(["".join(map(str, decode(logits).argmax(axis=1))) == text for logits, text in zip(found, texts, strict=True)]))
    meta = {"kind": KIND, "temperature": temperature, "parameters": sum(p.numel() for p in model.parameters()),
            "provenance": {"command": shlex.join(["python", "tools/train_rows.py", *(sys.argv[1:] if argv is None else argv)]),
                           "steps": args.steps, "batch": BATCH, "seed": args.seed, "flagged_ones": args.flagged_ones,
                           "training_seconds": round(seconds),
                           "built": datetime.now().isoformat(timespec="seconds"),
                           "train_data": {"name": train_set.name, "checksum": train_set.checksum, "digits": split},
                           "held_out_rows": len(texts), "held_out_exact": exact,
                           "versions": {"torch": torch.__version__, "onnx": onnx.__version__}}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_onnx(model, torch.zeros(1, 1, images.ROW_HEIGHT, 64), args.out, meta,
               {"rows": {0: "batch", 3: "width"}, "logits": {0: "batch", 2: "columns"}})
    RowReader(args.out)  # it loads as the package will load it
    print(f"{args.out}: {exact:.1%} of {len(texts)} held-out synthetic rows read exactly; temperature {temperature:.3f}; "
          f"{seconds:.0f} s of training")


if __name__ == "__main__":
    main()
