"""digitrec's image pipeline against a plain MNIST recipe, on real and synthetic development sets.

    python benchmarks/realworld.py [--model MODEL] [--sets .cache/devsets] [--only SECTION ...] [--limit N]
                                   [--threshold 0.9] [--save DIR] [--misses]

Both pipelines run the same model (default: the one bundled with digitrec) with the same threshold:
a reading under it is flagged ``uncertain``.

* digitrec: ``digitrec.load(model).read(...)``, the path of ``digitrec predict``: polarity, contrast,
  cropping, 20 px box, centre of mass, the calibrated confidence and the ``uncertain`` flag (which
  also flags an image holding several separate digits, and one without ink).
* plain: the textbook MNIST recipe, implemented here (:func:`plain_mnist`): the image decoded to
  grey (Pillow's ``convert("L")``, transparency ignored); the side of the mid-grey the border
  mostly lies on is paper, the other (the minority) ink, made white; the paper's level (the
  border's median) subtracted and the contrast stretched; cropped to the pixels above 25 % of the
  ink's maximum; the longer side scaled to 20 px (Lanczos, anti-aliased, aspect kept) and placed in
  28x28 with its centre of mass at the centre; then ``reader.probabilities``. It flags a reading
  under the threshold, and an image without ink, nothing else.

Sections (``--only``), each printed as a Markdown table:

* ``digits``: accuracy, share flagged uncertain and p(true) (the mean probability of the true digit,
  which moves before accuracy does) on realworld-dev per style family (SOURCES.tsv's styles grouped
  by what the pipeline has to undo; the true digit is the first character of the file name),
  sklearn8, sklearn32, the degraded-MNIST sets, and all 10,000 MNIST test digits given as 28x28 arrays
  (MNIST's format already: both pipelines hand them to the model as they are; target: at most 1 %
  flagged). A wrong answer given with confidence >= 0.9, or not flagged, is one a user cannot catch.
* ``negatives``: the share flagged (uncertain, or no digit at all) on notdigit-dev per kind and on
  the built ``negatives`` per style; for digitrec, why (no ink / several digits / low confidence /
  the digit detector finds no digit / the row reader disagrees / an error reading the file).
* ``auroc``: AUROC of "this is not a digit" with the score 1 - confidence (a reading without a
  digit has confidence 0), not-digits (notdigit-dev, negatives) against real digits (realworld-dev)
  and against the MNIST test digits.
* ``numbers``: the built ``numbers-train`` and ``numbers`` (per style; the first from MNIST's training
  digits, to choose on) and numbers-dev (the number is the file name before ``_``; grouped by
  length), read with ``reader.read(paths, multi=True)``: exact matches.
* ``timing``: milliseconds per image on realworld-dev, one image per call from the file to the digit
  (digitrec: ``reader.read(path)``; plain: decode, recipe, ``reader.probabilities``), best of 3
  passes per image; median, p90, max and mean over the images. With ``--against SRC`` (another checkout's
  ``src``: the code before a change), the current code and that code each read in a process of its own,
  one image at a time, taking turns image by image, on realworld-dev and (``--multi``) numbers-dev; the
  table gives both and their ratio.

The synthetic sets are built by ``benchmarks/devsets.py`` into ``--sets`` when missing. ``--limit N``
reads at most N images of each set (spread over the set), for quick runs. ``--save DIR`` writes what
each pipeline showed the model, under ``DIR/<set>/<pipeline>/``; ``--misses`` lists the files each
section gets wrong.

Threads: one image at a time on one core is the target. NumPy's BLAS and OpenMP pools are limited to
one thread (threadpoolctl), and so are OpenCV's and PyTorch's when digitrec has loaded them, and the
model runs on one thread (``digitrec.load(..., threads=1)``, as each of `digitrec serve`'s reading
processes runs it). The header says what was used.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import devsets
import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

import digitrec
from digitrec.choices import UNCERTAIN_BELOW
from digitrec.detector import Detector
from digitrec.errors import DigitrecError
from digitrec.predict import Predictor, Reading
from digitrec.rows import RowReader

SHARED = devsets.ROOT.parent / "shared" / "data"
SECTIONS = ("digits", "negatives", "auroc", "numbers", "timing")
PIPELINES = ("digitrec", "plain")
DIGIT_SETS = ("sklearn8", "sklearn32", *devsets.MNIST_STYLES)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
MNIST_DIGITS = 10_000  # MNIST test digits read as arrays: all of them (8 s)
CONFIDENT = 0.9
PASSES = 3  # timing: best of this many passes per image
INK_LEVEL = 0.25  # plain recipe: share of the ink's maximum that counts as ink when cropping
NO_PROBABILITIES = np.zeros(10)
# SOURCES.tsv's style descriptions, grouped by what the pipeline has to undo
FAMILIES = {
    "paint 28px": "tiny 28px drawings",
    "faint gray 28px": "tiny 28px drawings",
    "canvas drawing": "dark ink on light canvas",
    "marker drawing": "dark ink on light canvas",
    "canvas white-on-black": "light ink on dark canvas",
    "canvas on dark-gray": "light ink on dark canvas",
    "wide canvas": "small digit on wide canvas",
    "photo of paper": "photos",
    "chalkboard photo 28px": "photos",
    "pen crop 28px": "photos",
}


@dataclass(frozen=True)
class Sample:
    source: Path | np.ndarray  # a file, or a 28x28 digit in MNIST's format
    label: str  # the digit, the number, or "" for an image that is not a digit
    style: str
    name: str


@dataclass(frozen=True)
class Answer:
    """One pipeline's reading of one sample."""

    digit: int | None
    confidence: float  # 0 without a digit
    probabilities: np.ndarray  # the ten calibrated probabilities; zeros without a digit
    uncertain: bool
    why: str  # "" when not flagged; else "no ink", "several digits", "low confidence", "detector: not a digit",
    # "row reader disagrees" or "error"
    number: str | None = None  # multi=True: the digits read left to right

    def p(self, label: str) -> float:
        return float(self.probabilities[int(label)])


# --- the two pipelines -----------------------------------------------------------------------------

def _digitrec_answer(result: Reading | DigitrecError, threshold: float) -> Answer:
    if isinstance(result, DigitrecError):
        return Answer(None, 0.0, NO_PROBABILITIES, True, "error")
    probabilities = np.array(result.probabilities) if result.probabilities else NO_PROBABILITIES
    if not result.uncertain:
        why = ""
    elif result.number is not None:
        why = "no ink" if not result.digits else "low confidence"
    elif result.digit is None:
        why = "no ink"
    elif result.confidence < threshold:
        why = "low confidence"
    else:
        why = "detector: not a digit" if "detector" in result.reason else "row reader disagrees" if "row reader" in result.reason \
            else "several digits"
    return Answer(result.digit, result.confidence, probabilities, result.uncertain, why, result.number)


def read_digitrec(reader: Predictor, samples: Sequence[Sample], save: Path | None = None, multi: bool = False) -> list[Answer]:
    results = reader.read_each([s.source for s in samples], multi=multi, save_preprocessed=save, names=[s.name for s in samples])
    return [_digitrec_answer(result, reader.threshold) for result in results]


def plain_mnist(source: Path | np.ndarray) -> np.ndarray:
    """The textbook MNIST recipe: an image file -> uint8 28x28, white ink on black; all black when it has no ink."""
    if isinstance(source, np.ndarray):
        return source
    with Image.open(source) as image:
        grey = np.asarray(image.convert("L"), np.float32)
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if (border > (grey.min() + grey.max()) / 2).mean() > 0.5:  # the border is light paper: the ink is dark
        grey, border = 255 - grey, 255 - border
    ink = np.clip(grey - np.median(border), 0, None)
    if ink.max() < 1:
        return np.zeros((28, 28), np.uint8)
    rows, cols = np.nonzero(ink > INK_LEVEL * ink.max())
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] * (255 / ink.max())
    scale = 20 / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    digit = np.clip(np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS)), 0, 255)
    total = digit.sum()
    if total == 0:
        return np.zeros((28, 28), np.uint8)
    centre = [(digit.sum(axis=1 - axis) * np.arange(digit.shape[axis])).sum() / total for axis in (0, 1)]
    field = np.zeros((28, 28), np.float32)
    top, left = (round(14 - c) for c in centre)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + digit.shape[0], 28), min(left + digit.shape[1], 28)
    field[y0:y1, x0:x1] = digit[y0 - top : y1 - top, x0 - left : x1 - left]
    return np.round(field).astype(np.uint8)


def _plain_answer(digit: np.ndarray | None, probabilities: np.ndarray, threshold: float) -> Answer:
    if digit is None:
        return Answer(None, 0.0, NO_PROBABILITIES, True, "error")
    if not digit.any():
        return Answer(None, 0.0, NO_PROBABILITIES, True, "no ink")
    best = int(probabilities.argmax())
    low = probabilities[best] < threshold
    return Answer(best, float(probabilities[best]), probabilities, bool(low), "low confidence" if low else "")


def read_plain(reader: Predictor, samples: Sequence[Sample], save: Path | None = None) -> list[Answer]:
    digits: list[np.ndarray | None] = []
    for sample in samples:
        try:
            digits.append(plain_mnist(sample.source))
        except OSError:  # a file Pillow cannot decode
            digits.append(None)
    found = [d if d is not None else np.zeros((28, 28), np.uint8) for d in digits]
    probabilities = reader.probabilities(np.stack(found)) if found else np.zeros((0, 10))
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        for index, (sample, digit) in enumerate(zip(samples, found, strict=True)):
            Image.fromarray(digit).save(save / f"{index:04d}-{Path(sample.name).stem}.png")
    return [_plain_answer(d, p, reader.threshold) for d, p in zip(digits, probabilities, strict=True)]


# --- the sets --------------------------------------------------------------------------------------

def _tsv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def _images(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def realworld_samples(root: Path) -> list[Sample]:
    styles = {row["file"]: row["description"] for row in _tsv(root / "SOURCES.tsv")}
    return [Sample(p, p.name[0], FAMILIES.get(styles.get(p.name, "unknown"), styles.get(p.name, "unknown")), p.name)
            for p in _images(root) if p.name[0].isdigit()]


def notdigit_samples(root: Path) -> list[Sample]:
    kinds = {row["file"]: row["kind"] for row in _tsv(root / "SOURCES.tsv")}
    return [Sample(p, "", kinds.get(p.name, p.name.split("_")[0]), p.name) for p in _images(root)]


def numbers_dev_samples(root: Path) -> list[Sample]:
    return [Sample(p, p.name.split("_")[0], f"{len(p.name.split('_')[0])} digits", p.name) for p in _images(root)]


def built_samples(folder: Path) -> list[Sample]:
    return [Sample(item.path, item.label, item.style, item.path.name) for item in devsets.read_labels(folder)]


def mnist_samples(mnist: Path, count: int) -> list[Sample]:
    images, labels = devsets.mnist_digits(mnist)
    return [Sample(images[i], str(labels[i]), "28x28 arrays", f"mnist-test-{i:05d}") for i in range(min(count, len(images)))]


def spread(samples: list[Sample], limit: int | None) -> list[Sample]:
    """At most ``limit`` samples, spread evenly over the set (its styles and labels come in runs)."""
    if limit is None or len(samples) <= limit:
        return samples
    return [samples[i] for i in np.linspace(0, len(samples) - 1, limit).round().astype(int)]


class Bench:
    """The sets, each found and read by each pipeline once, when a section first asks for it."""

    def __init__(self, reader: Predictor, args: argparse.Namespace):
        self.reader = reader
        self.args = args
        self._samples: dict[str, list[Sample]] = {}
        self._answers: dict[tuple[str, str], list[Answer]] = {}

    def samples(self, name: str) -> list[Sample]:
        if name not in self._samples:
            self._samples[name] = spread(self._find(name), self.args.limit)
        return self._samples[name]

    def _find(self, name: str) -> list[Sample]:
        args = self.args
        if name == "realworld-dev":
            return realworld_samples(args.data)
        if name == "notdigit-dev":
            return notdigit_samples(args.notdigit)
        if name == "numbers-dev":
            return numbers_dev_samples(args.numbers)
        if name == "mnist-test":
            return mnist_samples(args.mnist, MNIST_DIGITS)
        return built_samples(devsets.build(name, args.sets, args.mnist))

    def answers(self, name: str, pipeline: str) -> list[Answer]:
        """``pipeline``'s answers on set ``name``: digitrec's, or plain's (numbers are digitrec's alone, with multi=True)."""
        if (name, pipeline) not in self._answers:
            save = self.args.save / name / pipeline if self.args.save else None
            if pipeline == "digitrec":
                found = read_digitrec(self.reader, self.samples(name), save, multi=name.startswith("numbers"))
            else:
                found = read_plain(self.reader, self.samples(name), save)
            self._answers[name, pipeline] = found
        return self._answers[name, pipeline]


# --- printing --------------------------------------------------------------------------------------

def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]], align: str = "ll") -> None:
    """A Markdown table, padded to line up; ``align`` says ``l`` or ``r`` for the first columns, the rest are right-aligned."""
    cells = [[str(cell) for cell in row] for row in [header, *rows]]
    widths = [max(3, *(len(row[i]) for row in cells)) for i in range(len(header))]
    lefts = [i < len(align) and align[i] == "l" for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        padded = (c.ljust(w) if left else c.rjust(w) for c, w, left in zip(row, widths, lefts, strict=True))
        return "| " + " | ".join(padded) + " |"

    print(f"\n### {title}\n")
    print(line(cells[0]))
    print("|" + "|".join(":" + "-" * (w + 1) if left else "-" * (w + 1) + ":" for w, left in zip(widths, lefts, strict=True)) + "|")
    for row in cells[1:]:
        print(line(row))


def share(flags: Sequence[bool] | np.ndarray) -> str:
    return f"{np.mean(flags):.1%}" if len(flags) else "-"


def groups(samples: Sequence[Sample]) -> list[tuple[str, list[int]]]:
    """Indices by style, sorted, then "all" when there is more than one style."""
    by_style: dict[str, list[int]] = defaultdict(list)
    for i, sample in enumerate(samples):
        by_style[sample.style].append(i)
    found = sorted(by_style.items())
    return [*found, ("all", list(range(len(samples))))] if len(found) > 1 else found


def _describe(answer: Answer) -> str:
    read = "-" if answer.digit is None else str(answer.digit)
    return f"{read} ({answer.confidence:.2f}, {answer.why or 'not flagged'})"


# --- the sections ----------------------------------------------------------------------------------

def digits_section(bench: Bench, misses: bool) -> None:
    rows, missed = [], []
    for name in ("realworld-dev", *DIGIT_SETS, "mnist-test"):
        samples, ours, plain = bench.samples(name), bench.answers(name, "digitrec"), bench.answers(name, "plain")
        for style, members in groups(samples):
            row: list[object] = [name, style, len(members)]
            for answers in (ours, plain):
                row += [share([str(answers[i].digit) == samples[i].label for i in members]),
                        share([answers[i].uncertain for i in members]),
                        f"{np.mean([answers[i].p(samples[i].label) for i in members]):.2f}"]
            rows.append(row)
        missed += [(name, s, a, b) for s, a, b in zip(samples, ours, plain, strict=True)
                   if str(a.digit) != s.label or str(b.digit) != s.label]
    table("Digits: accuracy, flagged uncertain, mean p(true digit)", ["set", "style", "n", "digitrec acc", "flagged", "p(true)",
                                                                      "plain acc", "flagged", "p(true)"], rows)
    print()
    samples = bench.samples("realworld-dev")
    for pipeline in PIPELINES:
        answers = bench.answers("realworld-dev", pipeline)
        wrong = [a for s, a in zip(samples, answers, strict=True) if str(a.digit) != s.label]
        right = [a for s, a in zip(samples, answers, strict=True) if str(a.digit) == s.label]
        print(f"realworld-dev, {pipeline}: wrong answers {len(wrong)}; with confidence >= {CONFIDENT}: "
              f"{sum(a.confidence >= CONFIDENT for a in wrong)}; not flagged uncertain: {sum(not a.uncertain for a in wrong)}; "
              f"right ones flagged: {sum(a.uncertain for a in right)}")
    if misses:
        print("\nWrong in either pipeline (set/file: true digit, digitrec's reading, plain's reading, style):")
        for name, sample, ours_, plain_ in sorted(missed, key=lambda m: (m[0], -m[2].confidence)):
            print(f"  {name}/{sample.name}: true {sample.label}  digitrec {_describe(ours_)}  plain {_describe(plain_)}  {sample.style}")


def negatives_section(bench: Bench, misses: bool) -> None:
    rows, accepted = [], []
    for name in ("notdigit-dev", "negatives"):
        samples, ours, plain = bench.samples(name), bench.answers(name, "digitrec"), bench.answers(name, "plain")
        for style, members in groups(samples):
            why = Counter(ours[i].why for i in members if ours[i].uncertain)
            reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(why.items())) or "-"
            rows.append([name, style, len(members), share([ours[i].uncertain for i in members]),
                         share([plain[i].uncertain for i in members]), reasons])
        accepted += [(name, s, a, b) for s, a, b in zip(samples, ours, plain, strict=True) if not a.uncertain or not b.uncertain]
    table("Not digits: share flagged (uncertain or no digit)", ["set", "style", "n", "digitrec flagged", "plain flagged",
                                                               "digitrec: why flagged"], rows, align="llrrrl")
    if misses:
        print("\nRead as a digit without a flag by either pipeline (set/file: digitrec's reading, plain's reading, style):")
        for name, sample, ours_, plain_ in sorted(accepted, key=lambda m: (m[0], -m[2].confidence)):
            print(f"  {name}/{sample.name}: digitrec {_describe(ours_)}  plain {_describe(plain_)}  {sample.style}")


def _unsure(answer: Answer) -> float:
    return 1 - answer.confidence


def _flagged_then_unsure(answer: Answer) -> float:
    """Every flagged reading (for whatever reason) above every unflagged one; 1 - confidence within each."""
    return float(answer.uncertain) + 1 - answer.confidence


def auroc_section(bench: Bench) -> None:
    not_digits = {"notdigit-dev": ["notdigit-dev"], "negatives": ["negatives"], "both": ["notdigit-dev", "negatives"]}
    rows = []
    for digits in ("realworld-dev", "mnist-test"):
        for label, names in not_digits.items():
            row: list[object] = [label, digits, sum(len(bench.samples(n)) for n in names), len(bench.samples(digits))]
            for pipeline in PIPELINES:
                for score in (_unsure, _flagged_then_unsure):
                    positive = [score(a) for n in names for a in bench.answers(n, pipeline)]
                    negative = [score(a) for a in bench.answers(digits, pipeline)]
                    truth = [1] * len(positive) + [0] * len(negative)
                    row.append(f"{roc_auc_score(truth, positive + negative):.3f}")
            rows.append(row)
    table('"Not a digit" detection: AUROC of 1 - confidence, and of the flag then 1 - confidence',
          ["not digits", "digits", "n not digits", "n digits", "digitrec", "digitrec, flag first", "plain", "plain, flag first"], rows)
    flagged = {p: share([a.uncertain for a in bench.answers("mnist-test", p)]) for p in PIPELINES}
    print(f"\nMNIST test digits flagged uncertain ({len(bench.samples('mnist-test'))} read as arrays, target <= 1 %): "
          f"digitrec {flagged['digitrec']}, plain {flagged['plain']}")


def numbers_section(bench: Bench, misses: bool) -> None:
    rows, wrong = [], []
    for name in ("numbers-train", "numbers", "numbers-dev"):  # rules are chosen on the first, checked on the others
        samples, answers = bench.samples(name), bench.answers(name, "digitrec")
        for style, members in groups(samples):
            rows.append([name, style, len(members), share([answers[i].number == samples[i].label for i in members]),
                         share([len(answers[i].number or "") == len(samples[i].label) for i in members]),
                         share([answers[i].uncertain for i in members]),
                         f"{100 * np.mean([answers[i].confidence for i in members]):.1f} %"])
        wrong += [(name, s, a) for s, a in zip(samples, answers, strict=True) if a.number != s.label]
    table("Numbers, digitrec with multi=True: exact match", ["set", "style", "n", "exact", "right length", "flagged",
                                                                 "mean confidence"], rows)
    if misses:
        print("\nNumbers read wrong (set/file: true number, read, confidence, style):")
        for name, sample, answer in wrong:
            print(f"  {name}/{sample.name}: true {sample.label}  read {answer.number or '-'}  ({answer.confidence:.2f})  {sample.style}")


def _best_times(paths: Sequence[Path], read: Callable[[Path], object]) -> np.ndarray:
    """Milliseconds per image, the best of ``PASSES`` passes over all of them."""
    read(paths[0])  # warm-up: first calls load code and fill caches
    best = np.full(len(paths), np.inf)
    for _ in range(PASSES):
        for i, path in enumerate(paths):
            started = time.perf_counter()
            read(path)
            best[i] = min(best[i], (time.perf_counter() - started) * 1000)
    return best


# Each code tree reads in a process of its own, one image per request, timing the read itself (one thread, as above).
_TIMED_READER = """
import sys, time
sys.path.insert(0, sys.argv[1])
import cv2, digitrec
from threadpoolctl import threadpool_limits
cv2.setNumThreads(1)
reader = digitrec.load(threads=1)
with threadpool_limits(limits=1):
    print(digitrec.__file__, flush=True)
    for line in sys.stdin:
        multi, path = line.rstrip("\\n").split("\\t")
        started = time.perf_counter()
        reader.read(path, multi=multi == "1")
        print((time.perf_counter() - started) * 1000, flush=True)
"""


class TimedReader:
    """``reader.read`` of the code under ``src``, in a process of its own: :meth:`ms` reads one image and says how long it took."""

    def __init__(self, src: Path):
        self.process = subprocess.Popen([sys.executable, "-c", _TIMED_READER, str(src)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        os.sched_setaffinity(self.process.pid, {max(os.sched_getaffinity(0))})  # both on one core: neither gets the quieter one
        self.package = self.process.stdout.readline().strip()

    def ms(self, path: Path, multi: bool) -> float:
        self.process.stdin.write(f"{int(multi)}\t{path}\n")
        self.process.stdin.flush()
        return float(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def compared_timing(bench: Bench, against: Path) -> None:
    """The current code and the code under ``against``, taking turns image by image (who goes first alternates)."""
    readers = {"now": TimedReader(Path(digitrec.__file__).parents[1]), "before": TimedReader(against)}
    print(f"now: {readers['now'].package}; before: {readers['before'].package}")
    try:
        rows = []
        for name, multi in (("realworld-dev", False), ("numbers-dev", True)):
            paths = [s.source for s in bench.samples(name) if isinstance(s.source, Path)]
            best = {label: np.full(len(paths), np.inf) for label in readers}
            for reader in readers.values():
                reader.ms(paths[0], multi)  # warm-up: first calls load code and fill caches
            for turn in range(bench.args.passes):
                for i, path in enumerate(paths):
                    order = list(readers) if (i + turn) % 2 == 0 else list(readers)[::-1]
                    for label in order:
                        best[label][i] = min(best[label][i], readers[label].ms(path, multi))
            for label, ms in best.items():
                rows.append([f"{name}{' --multi' if multi else ''}", label, len(ms), f"{np.median(ms):.2f}",
                             f"{np.percentile(ms, 90):.2f}", f"{ms.max():.1f}", f"{ms.mean():.2f}", ""])
            per_image = best["now"] / best["before"]
            rows.append([f"{name}{' --multi' if multi else ''}", "ratio now / before", "",
                         f"{np.median(best['now']) / np.median(best['before']):.3f}", "", "",
                         f"{best['now'].mean() / best['before'].mean():.3f}",
                         f"{np.median(per_image):.3f} ({np.percentile(per_image, 25):.3f}-{np.percentile(per_image, 75):.3f})"])
    finally:
        for reader in readers.values():
            reader.close()
    table(f"Time per image, one image per call, the two codes taking turns, best of {bench.args.passes} passes (ms)",
          ["set", "code", "n", "median", "p90", "max", "mean", "per image: median ratio (quartiles)"], rows, align="ll")


def timing_section(bench: Bench) -> None:
    if bench.args.against:
        compared_timing(bench, bench.args.against)
        return
    reader = bench.reader
    paths = [s.source for s in bench.samples("realworld-dev") if isinstance(s.source, Path)]
    pipelines = {"digitrec: reader.read(path)": reader.read,
                 "plain: recipe + reader.probabilities": lambda path: reader.probabilities(plain_mnist(path)[None])}
    rows = []
    for label, read in pipelines.items():
        ms = _best_times(paths, read)
        rows.append([label, len(ms), f"{np.median(ms):.1f}", f"{np.percentile(ms, 90):.1f}", f"{ms.max():.1f}", f"{ms.mean():.1f}"])
    table(f"Time per image on realworld-dev, one image per call, best of {PASSES} passes (ms)",
          ["pipeline", "n", "median", "p90", "max", "mean"], rows, align="l")


# --- main ------------------------------------------------------------------------------------------

def limit_threads(reader: Predictor) -> str:
    """One thread for OpenCV and PyTorch where digitrec has loaded them; what each library uses, in words."""
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:
        cv2.setNumThreads(1)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
    session = getattr(reader.engine, "session", None)
    ort = session.get_session_options().intra_op_num_threads if session is not None else None
    parts = [f"ONNX Runtime intra-op {ort or 'default (one per physical core)'}" if session is not None
             else "ONNX Runtime not used",
             f"PyTorch {torch.get_num_threads()}" if torch is not None else "PyTorch not loaded",
             f"OpenCV {cv2.getNumThreads()}" if cv2 is not None else "OpenCV not loaded",
             "NumPy BLAS/OpenMP 1 (threadpoolctl)"]
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint, run directory or .onnx file (default: the model bundled with digitrec)")
    parser.add_argument("--sets", type=Path, default=devsets.DEFAULT_OUT, help="folder of the built sets (built there when missing)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), metavar="SECTION",
                        help=f"sections to run: {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--limit", type=int, help="read at most N images of each set, spread over it")
    parser.add_argument("--rows", type=Path, help="row reader's .onnx file (default: the one bundled with digitrec)")
    parser.add_argument("--detector", type=Path, help="digit detector's .onnx file (default: the one bundled with digitrec)")
    parser.add_argument("--threshold", type=float, default=UNCERTAIN_BELOW, help="confidence under which a reading is flagged uncertain")
    parser.add_argument("--save", type=Path, help="write what each pipeline showed the model under DIR/<set>/<pipeline>/")
    parser.add_argument("--misses", action="store_true", help="list the files each section gets wrong")
    parser.add_argument("--data", type=Path, default=SHARED / "realworld-dev", help="realworld-dev: <digit>_*.png|jpg and SOURCES.tsv")
    parser.add_argument("--notdigit", type=Path, default=SHARED / "notdigit-dev", help="notdigit-dev: <kind>_*.png|jpg and SOURCES.tsv")
    parser.add_argument("--numbers", type=Path, default=SHARED / "numbers-dev", help="numbers-dev: <number>_*.png|jpg")
    parser.add_argument("--against", type=Path, metavar="SRC",
                        help="timing: also time the code under SRC (another checkout's src folder), taking turns with this one")
    parser.add_argument("--passes", type=int, default=PASSES, help=f"timing with --against: best of N passes (default {PASSES})")
    parser.add_argument("--mnist", type=Path, default=devsets.DEFAULT_MNIST, help="folder of MNIST's IDX files")
    args = parser.parse_args()

    reader = digitrec.load(args.model, threshold=args.threshold, threads=1)
    if args.rows or args.detector:
        reader = Predictor(reader.engine, args.threshold, RowReader(args.rows) if args.rows else "bundled",
                           Detector(args.detector) if args.detector else "bundled")
    bench = Bench(reader, args)
    with threadpool_limits(limits=1):
        threads = limit_threads(reader)
        print(f"model: {args.model or 'bundled'} = {reader.engine.source} ({reader.engine.kind}, temperature {reader.temperature:.3f}), "
              f"uncertain below {args.threshold}")
        row_reader = reader.row_reader
        print(f"row reader: {row_reader.source if row_reader else 'none'}")
        detector = reader.detector
        print(f"digit detector: {f'{detector.source} (threshold {detector.threshold:.3f})' if detector else 'none'}")
        print(f"threads: {threads}; machine: {os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}")
        if args.limit:
            print(f"at most {args.limit} images per set")
        started = time.perf_counter()
        if "digits" in args.only:
            digits_section(bench, args.misses)
        if "negatives" in args.only:
            negatives_section(bench, args.misses)
        if "auroc" in args.only:
            auroc_section(bench)
        if "numbers" in args.only:
            numbers_section(bench, args.misses)
        if "timing" in args.only:
            timing_section(bench)
        print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
