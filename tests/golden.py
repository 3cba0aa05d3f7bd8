"""What the bundled models read in every development set: the record a change to the reading pipeline is held to.

    python tests/golden.py            # rewrite tests/golden-readings.tsv from the current code

One line per input: the set, the file (or MNIST test digit), how it was read (``digit``: one digit;
``number``: ``--multi``), what was read, its probability to 4 places, ``uncertain``, the reason, and
a digest of the pixels the model saw, so that a change in preprocessing shows even where the reading
stays the same. ``test_golden.py`` reads everything again and compares.
"""

from __future__ import annotations

import csv
import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
RECORD = Path(__file__).with_name("golden-readings.tsv")
COLUMNS = ("set", "input", "read as", "reading", "probability", "uncertain", "reason", "seen")
IMAGE_SETS = {"realworld-dev": "digit", "notdigit-dev": "digit", "optdigits-dev": "digit",
              "numbers-dev": "number", "numbers-dev2": "number"}
MNIST_DIGITS = 1000


def _row(set_name: str, name: str, mode: str, reading) -> tuple[str, ...]:
    read = reading.number if mode == "number" else ("" if reading.digit is None else str(reading.digit))
    seen = hashlib.sha256(np.ascontiguousarray(reading.seen).tobytes() + str(reading.seen.shape).encode()).hexdigest()[:16]
    return (set_name, name, mode, read, f"{reading.confidence:.4f}", str(reading.uncertain), reading.reason, seen)


def readings() -> Iterator[tuple[str, ...]]:
    """Every development set read with the bundled models, a row (:data:`COLUMNS`) per input, in a fixed order."""
    import digitrec
    from digitrec.choices import IMAGE_SUFFIXES
    from digitrec.data import load_mnist

    reader = digitrec.load(threads=1)
    for set_name, mode in IMAGE_SETS.items():
        files = sorted(p for p in (SHARED / set_name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for path, reading in zip(files, reader.read(files, multi=mode == "number"), strict=True):
            yield _row(set_name, path.name, mode, reading)
    digits = load_mnist("test", data_dir=SHARED / "mnist", download=False).images[:MNIST_DIGITS]
    for index, reading in enumerate(reader.read(digits)):
        yield _row("mnist-test", f"{index:05d}", "digit", reading)


def recorded() -> list[tuple[str, ...]]:
    with RECORD.open(newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    return [tuple(row) for row in rows[1:]]


def main() -> None:
    rows = list(readings())
    with RECORD.open("w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    print(f"{len(rows)} readings written to {RECORD.relative_to(REPO)}", file=sys.stderr)


if __name__ == "__main__":
    main()
