"""Reading a written number whole: a small CNN with CTC over the row of ink, run by ONNX Runtime.

``--multi`` reads a number by cutting its ink into digits for the digit model. Where digits touch
or overlap, the cut is a guess: one digit may be split in two, or two read as one. The row reader
(``digitrec train --model rows``: synthetic rows of MNIST's training digits, apart, touching and
overlapping; :class:`digitrec.tasks.RowsTask`) reads the row without cutting it, so it counts such digits far better; the digit
model reads each digit better. :meth:`digitrec.predict.Predictor.read` uses both (see there).

The reader's input is :attr:`digitrec.images.Page.row`: the row 28 px high. Its output is one
column of 11 logits (ten digits, then CTC's blank) for every 2 px of the row.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from digitrec.inference import onnx_asset
from digitrec.metrics import log_softmax

BUNDLED = Path(__file__).parent / "assets" / "rows.onnx"  # the row reader that ships in the package (make rows)
BLANK = 10  # CTC's class for "no new digit here", after the ten digits
KIND = "row reader"  # what the ONNX file's digitrec metadata says it is


def digit_frames(logits: np.ndarray) -> list[int]:
    """Greedy CTC: the frame of each digit a row's ``(11, T)`` logits hold, left to right.

    A digit is a run of frames whose likeliest class is that digit (a blank parts two equal digits);
    its frame is the run's surest.
    """
    best = np.asarray(logits).argmax(axis=0)
    starts = np.flatnonzero(np.diff(best, prepend=-1))
    return [int(start + logits[best[start], start:stop].argmax())
            for start, stop in zip(starts, [*starts[1:], len(best)], strict=True) if best[start] != BLANK]


def sequence_probability(logits: np.ndarray, digits: list[int], temperature: float = 1.0) -> float:
    """CTC's probability that a row's ``(11, T)`` logits spell exactly ``digits``: the sum over every
    alignment of them (the forward algorithm), not greedy decoding's one best path.

    In probabilities, not logs: a sum too small for a float is a probability of 0 either way.
    """
    states = np.full(2 * len(digits) + 1, BLANK)
    states[1::2] = digits  # blank, digit, blank, digit, ..., blank
    frames = np.exp(log_softmax(np.asarray(logits, dtype=np.float64).T / temperature))[:, states]  # (T, states)
    # from each state a path stays, steps to the next, or skips the blank between two different digits
    moves = np.eye(len(states)) + np.eye(len(states), k=-1)
    moves[np.arange(3, len(states), 2), np.arange(1, len(states) - 2, 2)] = states[3::2] != states[1:-2:2]
    alpha = np.zeros(len(states))
    alpha[:2] = frames[0, :2]
    for frame in frames[1:]:
        alpha = (moves @ alpha) * frame
    return float(alpha[-2:].sum() if len(digits) else alpha[-1])


def decode(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """A row's ``(11, T)`` logits -> ``(K, 10)``: each digit's probabilities at its frame, divided by ``temperature``."""
    chosen = np.asarray(logits, dtype=np.float64)[:BLANK, digit_frames(logits)].T
    return np.exp(log_softmax(chosen / temperature)).astype(np.float32)


class RowReader:
    """A row reader in an ONNX file (or a run directory's export), with the temperature that calibrates its digits'
    probabilities."""

    def __init__(self, path: str | Path = BUNDLED, threads: int | None = 1):
        self.source = Path(path)
        self.session, self.meta = onnx_asset(self.source, KIND, "digitrec train --model rows", threads)
        self.temperature = float(self.meta.get("temperature", 1.0))
        self.input_name = self.session.get_inputs()[0].name

    def logits(self, row: np.ndarray) -> np.ndarray:
        """``(11, T)`` logits for one row (:attr:`digitrec.images.Page.row`)."""
        return self.session.run(None, {self.input_name: np.asarray(row, dtype=np.float32)[None, None]})[0][0]

    def read(self, row: np.ndarray) -> np.ndarray:
        """The row's digits, left to right, as ``(K, 10)`` calibrated probabilities."""
        return decode(self.logits(row), self.temperature)

    def probability(self, row: np.ndarray, digits: list[int]) -> float:
        """The calibrated probability that the row holds exactly ``digits``, left to right."""
        return sequence_probability(self.logits(row), digits, self.temperature)


@functools.cache
def bundled() -> RowReader | None:
    """The row reader that ships with digitrec, loaded once; None in an installation built without it."""
    return RowReader(BUNDLED) if BUNDLED.is_file() else None
