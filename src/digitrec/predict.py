"""Reading digits people give: files, PIL images, arrays or tensors -> digit, calibrated confidence, top 3.

>>> import digitrec
>>> reader = digitrec.load("runs/digitnet-20261121-101500")   # a run directory, checkpoint or .onnx file
>>> reader.predict(["seven.jpg", "two.png"])                   # array([7, 2])
>>> reader.read("photo.jpg").uncertain                          # True for a blank page, a cat, two digits

Arrays shaped ``(28, 28)``, ``(N, 28, 28)`` or ``(N, 784)`` are taken to be in MNIST's format
already (white ink on black, 0-255 or 0-1), as Kaggle's CSVs and Keras' arrays are; anything else
is an image and is brought into that format by :mod:`digitrec.images` first.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from digitrec import images
from digitrec.data import IMAGE_SUFFIXES, atomic_write, load_kaggle_csv
from digitrec.errors import DigitrecError
from digitrec.inference import Engine, TorchEngine, open_engine
from digitrec.metrics import log_softmax

UNCERTAIN_BELOW = 0.9  # calibrated confidence under which a reading is flagged uncertain: "high confidence" starts here


@dataclass
class Reading:
    """What the model makes of one image."""

    source: str
    digit: int | None  # the best guess; None when there is no ink at all
    confidence: float  # calibrated probability of ``digit`` (for a number: of all its digits together)
    top3: list[tuple[int, float]]
    uncertain: bool
    reason: str = ""  # why it is uncertain
    number: str | None = None  # --multi: the digits read left to right
    digits: list[Reading] = field(default_factory=list)  # --multi: one reading per digit

    def to_dict(self) -> dict[str, Any]:
        out = {"source": self.source, "digit": self.digit, "confidence": round(self.confidence, 6),
               "top3": [{"digit": d, "probability": round(p, 6)} for d, p in self.top3],
               "uncertain": self.uncertain, "reason": self.reason}
        if self.number is not None:
            out.update(number=self.number, digits=[d.to_dict() for d in self.digits])
        return out


def _is_mnist_array(array: np.ndarray) -> bool:
    return (array.ndim in (2, 3) and array.shape[-2:] == (28, 28)) or (array.ndim == 2 and array.shape[1] == 784)


def as_mnist_batch(array: np.ndarray) -> np.ndarray:
    """``(28, 28)``, ``(N, 28, 28)`` or ``(N, 784)`` digits, uint8 or floats in [0, 1], as uint8 ``(N, 28, 28)``."""
    array = np.asarray(array)
    if array.ndim == 2 and array.shape == (28, 28):
        array = array[None]
    if array.ndim == 2 and array.shape[1] == 784:
        array = array.reshape(-1, 28, 28)
    if array.ndim != 3 or array.shape[1:] != (28, 28):
        raise DigitrecError(f"digits must be shaped (28, 28), (N, 28, 28) or (N, 784), not {array.shape}")
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise DigitrecError(f"digits must hold numbers, not {array.dtype}")
    values = array.astype(np.float32)
    if not np.isfinite(values).all():
        raise DigitrecError("digits hold NaN or infinite values")
    if values.size and (values.min() < 0 or values.max() > 255):
        raise DigitrecError(f"pixel values run from {values.min():g} to {values.max():g}; expected 0-1 or 0-255")
    scale = 255.0 if values.size and values.max() <= 1.0 and not np.issubdtype(array.dtype, np.integer) else 1.0
    return np.round(values * scale).astype(np.uint8)


def _items(inputs: Any) -> list[Any]:
    """One input or many -> a list of single inputs; a batch of MNIST-format digits is split into its digits."""
    if hasattr(inputs, "detach"):  # a torch tensor, without importing torch for everyone else
        inputs = inputs.detach().cpu().numpy()
    if isinstance(inputs, np.ndarray) and _is_mnist_array(inputs):
        return list(as_mnist_batch(inputs))
    if isinstance(inputs, str | Path | Image.Image | np.ndarray):
        return [inputs]
    return list(inputs)


def _digit_or_ink(item: Any) -> np.ndarray | images.Ink:
    """A 28x28 MNIST-format digit as it is, or the ink found in any other image (decoded once)."""
    if hasattr(item, "detach"):
        item = item.detach().cpu().numpy()
    if isinstance(item, np.ndarray) and item.ndim == 2 and _is_mnist_array(item):
        return as_mnist_batch(item)[0]
    if isinstance(item, str | Path | Image.Image | np.ndarray):
        return images.find_ink(item)
    raise DigitrecError(f"cannot read a {type(item).__name__} as a digit: give paths, PIL images, arrays or tensors")


def _name(item: Any, index: int) -> str:
    return str(item) if isinstance(item, str | Path) else f"<{type(item).__name__} {index}>"


class Predictor:
    """A trained model that reads digits; made by :func:`load`."""

    def __init__(self, engine: Engine, threshold: float = UNCERTAIN_BELOW):
        self.engine = engine
        self.threshold = threshold

    @property
    def meta(self) -> dict[str, Any]:
        return self.engine.meta

    @property
    def temperature(self) -> float:
        """Divides the logits so that confidences match accuracies (fitted after training)."""
        return float(self.meta.get("temperature") or 1.0)

    @property
    def model(self) -> Any:
        """The PyTorch module (loading the checkpoint if ONNX Runtime is what runs the model)."""
        if isinstance(self.engine, TorchEngine):
            return self.engine.model
        source = self.engine.source.with_name("final.safetensors") if self.engine.source.name == "final.onnx" else None
        if source is None or not source.is_file():
            raise DigitrecError("an ONNX file holds no PyTorch module; load the checkpoint for that", str(self.engine.source))
        return TorchEngine.open(source).model

    def _digits(self, inputs: Any) -> np.ndarray:
        """Inputs of any accepted kind -> uint8 ``(N, 28, 28)``."""
        found = [_digit_or_ink(item) for item in _items(inputs)]
        batch = [item if isinstance(item, np.ndarray) else images.to_mnist(item) for item in found]
        return np.stack(batch) if batch else np.zeros((0, 28, 28), np.uint8)

    def probabilities(self, digits: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities for uint8 MNIST-format digits ``(N, 28, 28)``."""
        return np.exp(log_softmax(self.engine.logits(digits).astype(np.float64) / self.temperature))

    def predict_proba(self, inputs: Any) -> np.ndarray:
        """``(N, 10)`` calibrated probabilities for paths, PIL images, arrays or tensors."""
        return self.probabilities(self._digits(inputs))

    def predict(self, inputs: Any) -> np.ndarray:
        """The digit in each input."""
        return self.predict_proba(inputs).argmax(1)

    def _reading(self, source: str, probabilities: np.ndarray, has_ink: bool, pieces: int = 1) -> Reading:
        if not has_ink:
            return Reading(source, None, 0.0, [], True, "no ink found: a blank image")
        order = np.argsort(-probabilities)[:3]
        top3 = [(int(d), float(probabilities[d])) for d in order]
        digit, confidence = top3[0]
        reason = ""
        if pieces > 1:
            reason = f"looks like {pieces} digits; read it with --multi"
        elif confidence < self.threshold:
            reason = f"low confidence ({confidence:.0%} < {self.threshold:.0%})"
        return Reading(source, digit, confidence, top3, bool(reason), reason)

    def read(self, inputs: Any, multi: bool = False, save_preprocessed: str | Path | None = None,
             names: Sequence[str] | None = None) -> list[Reading]:
        """One :class:`Reading` per input; ``multi`` reads each image as a number written left to right."""
        readings = []
        for index, item in enumerate(_items(inputs)):
            source = names[index] if names else _name(item, index)
            found = _digit_or_ink(item)
            if isinstance(found, np.ndarray):
                digit, pieces = found, [found]  # already in MNIST's format: one digit as it is
            else:
                # only separate groups of ink count as several digits: cutting one wide digit is for --multi
                digit, pieces = images.to_mnist(found), images.segment_digits(found, split_touching=multi)
            if multi:
                readings.append(self._number(source, pieces))
            else:
                probabilities = self.probabilities(digit[None])[0]
                readings.append(self._reading(source, probabilities, bool(digit.any()), len(pieces)))
                pieces = [digit]
            if save_preprocessed is not None:
                _save_preprocessed(Path(save_preprocessed), source, index, pieces)
        return readings

    def _number(self, source: str, pieces: list[np.ndarray]) -> Reading:
        if not pieces:
            return Reading(source, None, 0.0, [], True, "no ink found: a blank image", number="")
        probabilities = self.probabilities(np.stack(pieces))
        digits = [self._reading(f"{source}#{i + 1}", p, True) for i, p in enumerate(probabilities)]
        confidence = float(np.prod([d.confidence for d in digits]))
        number = "".join(str(d.digit) for d in digits)
        unsure = [str(i + 1) for i, d in enumerate(digits) if d.uncertain]
        reason = f"low confidence in digit {', '.join(unsure)}" if unsure else ""
        return Reading(source, None, confidence, [], bool(unsure), reason, number=number, digits=digits)

    def write_submission(self, test_csv: str | Path, out: str | Path) -> int:
        """Kaggle's ``submission.csv`` (``ImageId,Label``, ImageId from 1) for ``test.csv``; returns the row count."""
        digits = load_kaggle_csv(test_csv)
        if digits.labelled:
            raise DigitrecError("has a label column: that is the training file; give the competition's test.csv", str(test_csv))
        labels = self.engine.logits(digits.images).argmax(1)  # the temperature cannot change an argmax
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["ImageId", "Label"])
        writer.writerows(zip(range(1, len(labels) + 1), labels.tolist(), strict=True))
        atomic_write(Path(out), text.getvalue().encode())
        return len(labels)


def _save_preprocessed(folder: Path, source: str, index: int, pieces: Sequence[np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    stem = Path(source).stem if not source.startswith("<") else f"input-{index}"
    for number, piece in enumerate(pieces):
        suffix = f"-{number + 1}" if len(pieces) > 1 else ""
        buffer = io.BytesIO()
        Image.fromarray(piece).save(buffer, format="PNG")
        atomic_write(folder / f"{index:04d}-{stem}{suffix}.png", buffer.getvalue())


def image_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files named, with the images inside any folder named (sorted, subfolders included)."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.exists():
            found.append(path)
        else:
            raise DigitrecError("no such file or folder", str(path))
    return found


def load(path: str | Path, engine: str = "auto", threshold: float = UNCERTAIN_BELOW) -> Predictor:
    """A :class:`Predictor` for a run directory, a ``.safetensors`` checkpoint or an exported ``.onnx`` file."""
    return Predictor(open_engine(path, engine), threshold)
