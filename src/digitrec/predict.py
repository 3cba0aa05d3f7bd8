"""Reading digits people give: files, PIL images, arrays or tensors -> digit, calibrated confidence, top 3.

>>> import digitrec
>>> reader = digitrec.load("runs/digitnet-20261121-101500")   # a run directory, checkpoint or .onnx file
>>> reader.predict(["seven.jpg", "two.png"])                   # array([7, 2])
>>> reader.read("photo.jpg").uncertain                          # True for a blank page, a cat, two digits

Arrays shaped like digits (``(28, 28)``, ``(784,)``, ``(N, 28, 28)``, ``(N, 784)``, with a channel
axis first or last, or RGB: :data:`digitrec.images.DIGIT_SHAPES`) are taken to be in MNIST's format
already (white ink on black), as Kaggle's CSVs and Keras' arrays are; their pixels follow one rule
(:func:`digitrec.images.as_pixels`: levels 0-255, or fractions 0-1 when no value exceeds 1). Any other
input (a file path, encoded image bytes, a PIL image, an array of another shape) is an image, brought
into that format by :mod:`digitrec.images` first.

An input without ink has no digit: ``read`` says so, ``predict`` gives -1 for it and
``predict_proba`` a row of zeros.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from digitrec import detector as digit_detector
from digitrec import images, rows
from digitrec.choices import IMAGE_SUFFIXES, UNCERTAIN_BELOW
from digitrec.data import load_kaggle_csv
from digitrec.errors import DigitrecError
from digitrec.files import atomic_write, check_output_file, check_writable_dir
from digitrec.inference import Engine, TorchEngine, file_digest, open_engine
from digitrec.metrics import log_softmax
from digitrec.rows import RowReader

# The row reader's probability that a digit the digit model reads surely is that digit, under which the two
# models disagree and the reading is flagged: the most that keeps MNIST's test digits flagged at <= 1 %
# (BENCHMARKS.md, "Not a digit: a second model's opinion").
DISAGREE_BELOW = 0.01
# ... asked only of readings the digit model is less sure of: beside the digit detector, the row reader catches no
# non-digit read more surely (BENCHMARKS.md, "The digit detector")
BEYOND_DOUBT = 0.999
# Where the row reader counts a number's digits otherwise than the cut-and-read, how many times likelier than the
# cut-and-read's it must find its own reading for it to win (BENCHMARKS.md: any factor of 5 to 300 reads as well)
ROW_READING_ODDS = 100.0
# A scan read this surely in one view is not read in its other views: every development set reads the same, and
# most scans are read in a third of the time (BENCHMARKS.md, "Scans: the turned views only when one view leaves doubt")
VIEWS_BELOW = 0.999


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
    probabilities: list[float] = field(default_factory=list)  # all ten, calibrated; empty when there is no digit
    seen: np.ndarray | None = field(default=None, repr=False, compare=False)  # (K, 28, 28) digits, or (1, 28, W): the row read whole

    def to_dict(self) -> dict[str, Any]:
        out = {"source": self.source, "digit": self.digit, "confidence": round(self.confidence, 6),
               "top3": [{"digit": d, "probability": round(p, 6)} for d, p in self.top3],
               "uncertain": self.uncertain, "reason": self.reason,
               "probabilities": [round(p, 6) for p in self.probabilities]}
        if self.number is not None:
            out.update(number=self.number, digits=[d.to_dict() for d in self.digits])
        return out


NO_DIGIT = -1  # what predict() gives for an input that holds no digit to read


def _one(item: Any) -> Any:
    """A single input as a 28x28 uint8 digit, a :class:`digitrec.images.Page`, or the image it is (decoded later, once)."""
    if hasattr(item, "detach"):  # a torch tensor, without importing torch for everyone else
        item = item.detach().cpu().numpy()
    if isinstance(item, np.ndarray):
        digits = images.digit_batch(item)
        if digits is None:
            return item
        if len(digits) != 1:
            raise DigitrecError(f"an array of {len(digits)} digits inside a list: pass the array itself", "input")
        return digits[0]
    if isinstance(item, str | Path | Image.Image | bytes | bytearray | images.Page):
        return item
    raise DigitrecError(f"cannot read a {type(item).__name__} as a digit: give file paths, encoded image bytes, PIL images, "
                        f"NumPy arrays, tensors or pages", "input")


def _items(inputs: Any) -> list[Any]:
    """One input or many -> a list of single inputs; a batch of MNIST-format digits is split into its digits."""
    if hasattr(inputs, "detach"):
        inputs = inputs.detach().cpu().numpy()
    if isinstance(inputs, list | tuple) and inputs and all(isinstance(v, int | float | list | tuple) for v in inputs):
        try:  # nested lists of numbers, as JSON gives them, are an array
            inputs = np.asarray(inputs, dtype=np.float64)
        except ValueError:
            raise DigitrecError("nested lists of pixels must form a rectangular array of numbers", "input") from None
    if isinstance(inputs, np.ndarray):
        digits = images.digit_batch(inputs)
        return list(digits) if digits is not None else [inputs]
    if isinstance(inputs, list | tuple):
        return [_one(item) for item in inputs]
    return [_one(inputs)]


def _page(item: Any) -> images.Page:
    """A single input (:func:`_one`) as a page: a 28x28 uint8 digit in MNIST's format as it is, any other image decoded."""
    if isinstance(item, images.Page):
        return item
    if isinstance(item, np.ndarray) and item.shape == (images.FIELD, images.FIELD) and item.dtype == np.uint8:
        return images.Page.mnist(item)
    return images.Page.of(item)


def _name(item: Any, index: int) -> str:
    if isinstance(item, images.Page) and item.source:
        return item.source
    return str(item) if isinstance(item, str | Path) else f"<{type(item).__name__} {index}>"


# What a reading says of a page that holds nothing to read, by why (images.Page.nothing): a page whose ink was
# all taken for lines is never called blank
NOTHING = {"blank": "no ink found: a blank image",
           "busy": "no digit found: the whole image is busy, and no pen strokes stand out of it",
           "lines": "no digit found: only lines (of a grid, a form or ruled paper), which are not read",
           "dot": "no digit found: only a dot"}


def _no_ink(source: str, multi: bool, why: str | None = None) -> Reading:
    """The reading of a page that holds nothing to read, saying why (:data:`NOTHING`)."""
    return Reading(source, None, 0.0, [], True, NOTHING[why or "blank"], number="" if multi else None)


class Predictor:
    """A trained model that reads digits; made by :func:`load`."""

    def __init__(self, engine: Engine, threshold: float = UNCERTAIN_BELOW, row_reader: RowReader | str | None = "bundled",
                 detector: digit_detector.Detector | str | None = "bundled"):
        """``row_reader``: what counts the digits of a written number (``multi``) beside the digit model, and gives
        a second opinion on a single digit; ``detector``: what tells a digit from something else. Each is
        ``"bundled"`` (the one that ships, when it is installed), a :class:`digitrec.rows.RowReader` or
        :class:`digitrec.detector.Detector`, or None.
        """
        self.engine = engine
        self.threshold = threshold
        self._row_reader = row_reader
        self._detector = detector

    @property
    def row_reader(self) -> RowReader | None:
        return rows.bundled() if self._row_reader == "bundled" else self._row_reader

    @property
    def detector(self) -> digit_detector.Detector | None:
        return digit_detector.bundled() if self._detector == "bundled" else self._detector

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
        exported_from = self.meta.get("exported_from")
        source = self.engine.source.with_name(exported_from) if exported_from else None
        if source is None or not source.is_file() or file_digest(source) != self.meta.get("exported_from_sha256"):
            raise DigitrecError("an ONNX file holds no PyTorch module; load the checkpoint for that", str(self.engine.source))
        return TorchEngine.open(source).model

    def _digits(self, inputs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Inputs of any accepted kind -> uint8 ``(N, 28, 28)``, which of them are scans and which blank (:class:`digitrec.images.Page`)."""
        read = [(page.digit, page.scan, page.blank) for page in map(_page, _items(inputs))]  # each page let go once read
        batch = np.stack([digit for digit, _, _ in read]) if read else np.zeros((0, images.FIELD, images.FIELD), np.uint8)
        scans, blanks = (np.array([row[i] for row in read], dtype=bool) for i in (1, 2))
        return batch, scans, blanks

    def probabilities(self, digits: np.ndarray) -> np.ndarray:
        """The model's calibrated class probabilities for uint8 MNIST-format digits ``(N, 28, 28)``, ink or not."""
        return self._calibrated(self.engine.logits(digits))

    def _calibrated(self, logits: np.ndarray) -> np.ndarray:
        return np.exp(log_softmax(logits.astype(np.float64) / self.temperature))

    def _probabilities(self, digits: np.ndarray, scans: np.ndarray) -> np.ndarray:
        """:meth:`probabilities`; a scan's, unless one view reads it surely (``VIEWS_BELOW``), from its digit's logits
        averaged over its views (:func:`digitrec.images.views`), which keeps them as sharp, and as well calibrated,
        as one view's (BENCHMARKS.md)."""
        logits = self.engine.logits(digits)
        unsure = np.flatnonzero(scans)
        unsure = unsure[self._calibrated(logits[unsure]).max(axis=1) < VIEWS_BELOW]
        if len(unsure):
            turned = self.engine.logits(np.concatenate([images.views(digit) for digit in digits[unsure]]))
            turned = turned.reshape(len(unsure), len(images.SCAN_TURNS), -1)
            logits[unsure] = (logits[unsure] + turned.sum(axis=1)) / (1 + len(images.SCAN_TURNS))
        return self._calibrated(logits)

    def predict_proba(self, inputs: Any) -> np.ndarray:
        """``(N, 10)`` calibrated probabilities for paths, image bytes, PIL images, arrays or tensors.

        The row of an input that holds no digit (no ink, or a broken model's NaN output) is all
        zeros: no digit is probable.
        """
        digits, scans, blanks = self._digits(inputs)
        probabilities = self._probabilities(digits, scans)
        probabilities[blanks | ~np.isfinite(probabilities).all(axis=1)] = 0.0  # no digit is probable
        return probabilities

    def predict(self, inputs: Any) -> np.ndarray:
        """The digit in each input, or -1 (:data:`NO_DIGIT`) where there is none: the argmax of ``predict_proba`` otherwise."""
        probabilities = self.predict_proba(inputs)
        return np.where(probabilities.any(axis=1), probabilities.argmax(axis=1), NO_DIGIT)

    def _reading(self, source: str, probabilities: np.ndarray, pieces: int = 1) -> Reading:
        if not np.isfinite(probabilities).all():
            return Reading(source, None, 0.0, [], True, "the model's output is not a number: the model is broken (retrain it)")
        order = np.argsort(-probabilities)[:3]
        top3 = [(int(d), float(probabilities[d])) for d in order]
        digit, confidence = top3[0]
        reason = ""
        if pieces > 1:
            reason = f"looks like {pieces} digits; read it with --multi"
        elif confidence < self.threshold:
            reason = f"not clearly a digit: confidence {confidence:.0%} < {self.threshold:.0%}"
        return Reading(source, digit, confidence, top3, bool(reason), reason, probabilities=[float(p) for p in probabilities])

    def read(self, inputs: Any, multi: bool = False, save_preprocessed: str | Path | None = None,
             names: Sequence[str] | None = None, explain: str | Path | None = None) -> list[Reading]:
        """One :class:`Reading` per input; ``multi`` reads each image as a number written left to right.

        The first input that cannot be read raises its :class:`DigitrecError`; :meth:`read_each` reads on past it.
        """
        readings = []
        for result in self.read_each(inputs, multi, save_preprocessed, names, explain):
            if isinstance(result, DigitrecError):
                raise result
            readings.append(result)
        return readings

    def read_each(self, inputs: Any, multi: bool = False, save_preprocessed: str | Path | None = None,
                  names: Sequence[str] | None = None, explain: str | Path | None = None) -> Iterator[Reading | DigitrecError]:
        """A :class:`Reading` for each input as it is read, or the :class:`DigitrecError` that input gave instead.

        ``save_preprocessed`` writes what the model saw as ``NAME.png``, named after the input
        (``photo_5.png`` for ``shots/photo_5.jpg``; ``photo_5-2.png`` for a second input of that name).
        ``explain`` writes ``NAME-steps.png``: each step of the preprocessing, side by side.
        """
        folders = [check_writable_dir(f) if f is not None else None for f in (save_preprocessed, explain)]
        output_names = _OutputNames()
        for index, item in enumerate(_items(inputs)):
            source = names[index] if names else _name(item, index)
            try:
                yield self._read_one(item, source, multi, output_names, *folders)
            except DigitrecError as e:  # an image given as bytes or as an object is named as the caller named it
                named = e.source and not e.source.startswith("<")
                yield e if named else type(e)(e.reason, "stdin" if source == "-" else source, e.place)

    def _read_one(self, item: Any, source: str, multi: bool, output_names: _OutputNames, folder: Path | None,
                  explain: Path | None) -> Reading:
        page = _page(item)
        reading = self._read_number(page, source) if multi else self._read_digit(page, source)
        if folder is not None or explain is not None:
            _write_views(page, reading, output_names(source), folder, explain)
        return reading

    def _read_digit(self, page: images.Page, source: str) -> Reading:
        """One digit: the page's ink read whole, flagged where it is several digits or a second model doubts it."""
        if page.blank:
            reading = _no_ink(source, multi=False, why=page.nothing)
        else:
            probabilities = self._probabilities(page.digit[None], np.array([page.scan]))[0]
            # only separate groups of ink count as several digits: cutting one wide digit is for --multi
            reading = self._second_opinion(self._reading(source, probabilities, page.count), page.digit)
        reading.seen = page.digit[None]
        return reading

    def _second_opinion(self, reading: Reading, digit: np.ndarray) -> Reading:
        """The reading, flagged where the detector finds the 28x28 input is not a digit, or where the row
        reader, a second model that reads the same 28x28 digit, is all but sure it is not that digit.

        The digit model alone may read letters, symbols, icons and scribbles surely (BENCHMARKS.md). The
        detector learned to tell them from digits; two digit readers trained apart agree on digits and
        disagree on many things that are not one. A threshold of 0 asks for no "not clearly a digit" flag
        at all, these included. The row reader is not asked where the digit model is beyond doubt
        (``BEYOND_DOUBT``: most digits), which saves most of the 0.5 ms it takes.
        """
        if reading.uncertain or self.threshold <= 0:
            return reading
        judge = self.detector
        if judge is not None and judge.not_digits(digit[None])[0]:
            reading.uncertain = True
            reading.reason = "not a digit: the digit detector, a second model, finds it unlike any of the ten"
            return reading
        row_reader = self.row_reader
        if reading.confidence >= BEYOND_DOUBT or row_reader is None:
            return reading
        agreed = row_reader.probability(images.fit_row(digit / 255.0), [reading.digit])
        if agreed < DISAGREE_BELOW:
            reading.uncertain = True
            odds = f"{agreed:.1%}" if agreed >= 0.001 else "under 0.1%"
            reading.reason = f"not clearly a digit: a second model, the row reader, gives {reading.digit} {odds}"
        return reading

    def _best_cut(self, groups: list[list[list[np.ndarray]]]) -> tuple[list[np.ndarray], np.ndarray]:
        """For each group of ink, the option (one digit, two touching ones, ...) the model reads most surely:
        the chosen digits, and their ``(K, 10)`` probabilities.

        An option scores the sum of the log-probabilities of its digits' readings: each cut adds a digit
        that must be read surely, so a cut wins only where its pieces read much more surely than the whole.
        """
        options = [option for group in groups for option in group]
        flat = [piece for option in options for piece in option]
        if not flat:
            return [], np.zeros((0, 10))
        probabilities = self.probabilities(np.stack(flat))
        sure = np.log(np.maximum(probabilities.max(axis=1), 1e-12))
        starts = np.cumsum([0, *map(len, options)])
        scores = [float(sure[start:stop].sum()) for start, stop in itertools.pairwise(starts)]
        chosen, first = [], 0
        for group in groups:
            best = first + max(range(len(group)), key=lambda i: scores[first + i])
            chosen += range(starts[best], starts[best + 1])
            first += len(group)
        return [flat[i] for i in chosen], probabilities[chosen]

    def _read_number(self, page: images.Page, source: str) -> Reading:
        """A written number, its digits read left to right (:meth:`_number_digits`); flagged where the two readers
        count its digits differently, since then one of them has dropped or invented a digit."""
        probabilities, pieces, counts = self._number_digits(page)
        reading = self._number(source, probabilities) if len(probabilities) else _no_ink(source, multi=True, why=page.nothing)
        if counts is not None:
            doubt = f"the digit model counts {counts[0]} digits, the row reader {counts[1]}"
            reading.uncertain, reading.reason = True, f"{doubt}; {reading.reason}" if reading.reason else doubt
        reading.seen = np.stack(pieces) if pieces else np.zeros((0, images.FIELD, images.FIELD), np.uint8)
        return reading

    def _number_digits(self, page: images.Page) -> tuple[np.ndarray, list[np.ndarray], tuple[int, int] | None]:
        """A written number's digits as ``(K, 10)`` probabilities, what was read (the digits, or the row), and the
        two readers' counts of its digits where they differ (None where they agree, or where only one reads).

        The digit model reads the ink cut where it reads the pieces most surely (:meth:`_best_cut`);
        the row reader reads the row uncut, and counts touching and overlapping digits better. Where the
        two count the same digits, each digit is read by both: their readings are pooled (:func:`_pooled`).
        Where they count otherwise, the row reader weighs both readings, and its own wins only if it finds
        it ``ROW_READING_ODDS`` times as likely as the digit model's (BENCHMARKS.md, "Numbers").
        """
        pieces, probabilities = self._best_cut(page.options)
        row_reader = self.row_reader
        row = page.row if row_reader is not None else None
        if row is not None:
            logits = row_reader.logits(row)
            read = rows.decode(logits, row_reader.temperature)
            if len(read) == len(pieces):
                return _pooled(probabilities, read), pieces, None
            if len(read):
                counts = (len(pieces), len(read))
                odds = [rows.sequence_probability(logits, reading.argmax(axis=1).tolist(), row_reader.temperature)
                        for reading in (read, probabilities)]
                if odds[0] > ROW_READING_ODDS * odds[1]:
                    return read, [np.round(row * 255).astype(np.uint8)], counts
                return probabilities, pieces, counts
        return probabilities, pieces, None

    def _number(self, source: str, probabilities: np.ndarray) -> Reading:
        digits = [self._reading(f"{source}#{i + 1}", p) for i, p in enumerate(probabilities)]
        confidence = float(np.prod([d.confidence for d in digits]))
        number = "".join("?" if d.digit is None else str(d.digit) for d in digits)
        unsure = [str(i + 1) for i, d in enumerate(digits) if d.uncertain]
        reason = f"low confidence in digit {', '.join(unsure)}" if unsure else ""
        return Reading(source, None, confidence, [], bool(unsure), reason, number=number, digits=digits)

    def write_submission(self, test_csv: str | Path, out: str | Path) -> int:
        """Kaggle's ``submission.csv`` (``ImageId,Label``, ImageId from 1) for ``test.csv``; returns the row count."""
        check_output_file(out)
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


def _pooled(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Two models' ``(K, 10)`` probabilities for the same digits, pooled: their geometric mean, normalised.

    Where one model is unsure and the other sure, the sure one mostly decides; where both are sure of
    different digits, the pooled reading is unsure. On the built numbers it is better calibrated than
    either model alone or their product (BENCHMARKS.md, "Numbers: both models read each digit").
    """
    logs = [np.log(np.maximum(np.asarray(p, dtype=np.float64), 1e-300)) for p in (first, second)]  # float32 may hold exact 0s
    return np.exp(log_softmax((logs[0] + logs[1]) / 2)).astype(np.float32)


class _OutputNames:
    """The file names of one read's views: each input's own name (``photo_5`` for ``shots/photo_5.jpg``), numbered from 2
    only where inputs share one (``photo_5-2``), so that no view overwrites another."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def __call__(self, source: str) -> str:
        if source == "-":
            base = "stdin"
        elif source.startswith("<"):
            base = source.strip("<>").replace(" ", "-")
        else:
            base = Path(source.replace("\\", "/")).stem or "image"
        name, count = base, 1
        while name in self.taken:
            count += 1
            name = f"{base}-{count}"
        self.taken.add(name)
        return name


def _write_views(page: images.Page, reading: Reading, name: str, folder: Path | None, explain: Path | None) -> None:
    """What the model saw (``folder``: ``NAME.png``, or ``NAME-K.png`` for each digit of a number) and each step
    that led there (``explain``: ``NAME-steps.png``)."""
    pieces = list(reading.seen)
    if folder is not None:
        for number, piece in enumerate(pieces):
            _write_png(folder / (f"{name}-{number + 1}.png" if len(pieces) > 1 else f"{name}.png"), Image.fromarray(piece))
    if explain is not None:
        seen = [("the row, read whole" if piece.shape != (images.FIELD, images.FIELD) else "model's 28x28" if len(pieces) == 1
                 else f"digit {i + 1}", piece) for i, piece in enumerate(pieces)]
        _write_png(explain / f"{name}-steps.png", images.strip([*page.steps, *seen]))


def _write_png(path: Path, image: Image.Image) -> None:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write(path, buffer.getvalue())


def images_in(folder: str | Path) -> list[Path]:
    """The image files in ``folder`` and its subfolders, sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load(path: str | Path | None = None, engine: str = "auto", threshold: float = UNCERTAIN_BELOW,
         threads: int | None = None, *, rows: str | Path | None = None, detector: str | Path | None = None) -> Predictor:
    """A :class:`Predictor` for a run directory, a ``.safetensors`` checkpoint or an exported ``.onnx`` file.

    With no path, the model that ships with digitrec (the default recipe, seed 0). ``threads``: the
    model's intra-op threads (None: one per core, best for batches; 1 for one image at a time, as a
    server with a process per core reads them). ``rows`` and ``detector`` replace the bundled row
    reader and digit detector: an ``.onnx`` file or a run directory of ``digitrec train --model rows``
    (``--model detector``).
    """
    row_reader = RowReader(Path(rows)) if rows is not None else "bundled"
    judge = digit_detector.Detector(Path(detector)) if detector is not None else "bundled"
    return Predictor(open_engine(path, engine, threads=threads), threshold, row_reader, judge)
