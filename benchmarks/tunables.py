"""How much each of the image pipeline's tunables matters: every development set read with each one nudged either way.

    python benchmarks/tunables.py [--only NAME ...] [--factor 1.25]

Each numeric tunable of :mod:`digitrec.images` is set to its value divided and multiplied by ``--factor``
(a whole number moves by at least 1), one at a time, and every development set is read again with the
bundled models: realworld-dev, notdigit-dev, optdigits-dev (one digit each), numbers-dev and numbers-dev2
(``--multi``) and MNIST's first 1,000 test digits given as images (dark ink on white, 84 px a side, so
that they go through the whole pipeline). The table gives, per setting, how many of the readings change
and each set's score: digits read right (and flagged) on realworld-dev, optdigits-dev and MNIST, numbers
read exactly, non-digits flagged. A tunable whose nudges change nothing is not what the sets decide; one
that moves a score is held where it is by that set.

The formats a trained model depends on (the row reader's input, MNIST's field) and the limits that are
about safety or speed, not readings, are left out. ``WORK_PIXELS`` is nudged where the ink is found (a
JPEG is still decoded at the reduced scale the default gives).
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import platform
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
from threadpoolctl import threadpool_limits

import digitrec
from digitrec.choices import IMAGE_SUFFIXES
from digitrec.data import load_mnist

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MODULES = ("ink", "clean", "field", "cuts")
LEFT_OUT = {"ROW_HEIGHT", "ROW_MARGIN", "ROW_STEP", "ROW_INK",  # the row reader was trained on this input
            "SAMPLE"}  # how many pixels order statistics are taken on: speed
SINGLE = ("realworld-dev", "notdigit-dev", "optdigits-dev")
NUMBERS = ("numbers-dev", "numbers-dev2")
MNIST_DIGITS = 1000


def tunables(only: list[str] | None) -> list[tuple[list[object], str, float]]:
    """(the modules that hold it, name, value) of every numeric tunable (an upper-case module constant, int or float):
    a tunable one module imports from another (RULE_ASPECT, for the underline and the groups) is nudged in both."""
    found: dict[str, tuple[list[object], str, float]] = {}
    for name in MODULES:
        module = importlib.import_module(f"digitrec.images.{name}")
        for key, value in vars(module).items():
            if (key.isupper() and not key.startswith("_") and type(value) in (int, float) and key not in ("FIELD", "BOX", *LEFT_OUT)
                    and (not only or key in only)):
                found.setdefault(key, ([], key, value))[0].append(module)
    return list(found.values())


def nudged(value: float, factor: float) -> list[float]:
    if isinstance(value, int):
        return sorted({max(0, min(value - 1, math.floor(value / factor))), max(value + 1, math.ceil(value * factor))})
    return [value / factor, value * factor]


def inputs() -> Iterator[tuple[str, str, str, object]]:
    """(set, name, truth, input) for every input read: truth is the digit or number, or "" for a non-digit."""
    for set_name in (*SINGLE, *NUMBERS):
        for path in sorted(p for p in (SHARED / set_name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            truth = "" if set_name == "notdigit-dev" else path.name.split("_")[0]
            yield set_name, path.name, truth, path
    test = load_mnist("test", data_dir=SHARED / "mnist", download=False)
    for i in range(MNIST_DIGITS):
        page = 255 - cv2.resize(test.images[i], (84, 84), interpolation=cv2.INTER_LINEAR)
        yield "mnist-as-images", f"{i:05d}", str(test.labels[i]), page


def read_all(reader: digitrec.Predictor, items: list[tuple[str, str, str, object]]) -> list[tuple[str, bool]]:
    """(what was read, flagged) for each input."""
    out = []
    for set_name, _, _, source in items:
        reading = reader.read([source], multi=set_name in NUMBERS)[0]
        read = reading.number if set_name in NUMBERS else ("" if reading.digit is None else str(reading.digit))
        out.append((read, bool(reading.uncertain)))
    return out


def scores(items: list[tuple[str, str, str, object]], readings: list[tuple[str, bool]]) -> dict[str, str]:
    """Each set's score: right (flagged) for digits, exact for numbers, flagged for non-digits."""
    by_set: dict[str, list[tuple[str, str, bool]]] = {}
    for (set_name, _, truth, _), (read, flagged) in zip(items, readings, strict=True):
        by_set.setdefault(set_name, []).append((truth, read, flagged))
    out = {}
    for set_name, rows in by_set.items():
        if set_name == "notdigit-dev":
            out[set_name] = f"{sum(f for _, _, f in rows)}/{len(rows)} flagged"
        elif set_name in NUMBERS:
            out[set_name] = f"{sum(t == r for t, r, _ in rows)}/{len(rows)}"
        else:
            out[set_name] = f"{sum(t == r for t, r, _ in rows)} ({sum(f for _, _, f in rows)})"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="these tunables only")
    parser.add_argument("--factor", type=float, default=1.25, help="each value is divided and multiplied by this (default 1.25)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    reader = digitrec.load(threads=1)
    items = list(inputs())
    started = time.perf_counter()
    with threadpool_limits(limits=1):
        base = read_all(reader, items)
        base_scores = scores(items, base)
        sets = list(base_scores)
        print(f"{len(items)} inputs; bundled models; {os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}; "
              f"factor {args.factor}\n")
        print("| tunable | value | readings changed | " + " | ".join(sets) + " |")
        print("|---|---|---:|" + "---:|" * len(sets))
        print("| (as it is) | | 0 | " + " | ".join(base_scores[s] for s in sets) + " |")
        for modules, name, value in tunables(args.only):
            for trial in nudged(value, args.factor):
                for module in modules:
                    setattr(module, name, trial)
                try:
                    now = read_all(reader, items)
                finally:
                    for module in modules:
                        setattr(module, name, value)
                changed = sum(a != b for a, b in zip(base, now, strict=True))
                row = scores(items, now)
                cells = [row[s] if row[s] != base_scores[s] else "=" for s in sets]
                print(f"| {modules[0].__name__.rsplit('.', 1)[1]}.{name} | {value:g} → {trial:g} | {changed} | " + " | ".join(cells) + " |",
                      flush=True)
    print(f"\n({time.perf_counter() - started:.0f} s; '=': the score as it is; digits: right (flagged))")


if __name__ == "__main__":
    main()
