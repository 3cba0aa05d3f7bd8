"""Is it a digit at all? A small CNN, trained apart from the digit model, run by ONNX Runtime.

A model trained to choose among ten digits must choose one, and softmax confidence does not say
when none is there: letters, signs, icons and scribbles are often read at 99 %. The detector
(``digitrec train --model detector``; :class:`digitrec.tasks.DetectorTask`) learned from MNIST's
digits and from letters, signs, scribbles and shapes, each brought into MNIST's format as digitrec
brings a user's image, to tell the two apart.
It reads the same 28x28 input as the digit model and gives one score; above the threshold in its
metadata (set so that 1 in 2,000 held-out training digits lie above it), the input is not a digit.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from digitrec.errors import DigitrecError
from digitrec.inference import onnx_asset

BUNDLED = Path(__file__).parent / "assets" / "detector.onnx"  # the detector that ships in the package
KIND = "digit detector"  # what the ONNX file's digitrec metadata says it is


class Detector:
    """A digit detector in an ONNX file (or a run directory's export), with its threshold."""

    def __init__(self, path: str | Path = BUNDLED, threads: int | None = 1):
        self.source = Path(path)
        self.session, self.meta = onnx_asset(self.source, KIND, "digitrec train --model detector", threads)
        if not isinstance(self.meta.get("threshold"), int | float):
            raise DigitrecError("a digit detector without a threshold in its metadata", str(path))
        self.threshold = float(self.meta["threshold"])
        self.input_name = self.session.get_inputs()[0].name

    def scores(self, digits: np.ndarray) -> np.ndarray:
        """One score for each uint8 ``(N, 28, 28)`` digit in MNIST's format; above :attr:`threshold`: not a digit."""
        batch = np.asarray(digits, dtype=np.float32)[:, None] / 255.0
        return self.session.run(None, {self.input_name: batch})[0][:, 0]

    def not_digits(self, digits: np.ndarray) -> np.ndarray:
        """Which of the ``(N, 28, 28)`` digits are not digits."""
        return self.scores(digits) > self.threshold


@functools.cache
def bundled() -> Detector | None:
    """The detector that ships with digitrec, loaded once; None in an installation built without it."""
    return Detector(BUNDLED) if BUNDLED.is_file() else None
