"""Accuracy on real handwritten digits from outside MNIST, per style family, as `digitrec predict` reads them.

    python benchmarks/realworld.py --model runs/default-... [--data ../shared/data/realworld-dev] [--save DIR]

Every image goes through `digitrec.load(model).read`, the path of `digitrec predict`: the same
preprocessing (polarity, contrast, cropping, 20 px box, centre of mass), the calibrated confidence
and the `uncertain` flag. The true digit is the first character of each file name; SOURCES.tsv gives
each file's style, grouped here into families. A wrong answer given with confidence >= 0.9 is
counted apart, and so is a wrong answer not flagged uncertain: those are the ones a user cannot catch.
p(true) is the mean probability the model gives the true digit: it moves before accuracy does.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

import digitrec

CONFIDENT = 0.9
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


def read_styles(root: Path) -> dict[str, str]:
    table = root / "SOURCES.tsv"
    if not table.is_file():
        return {}
    with table.open(newline="") as f:
        return {row["file"]: row["description"] for row in csv.DictReader(f, delimiter="\t")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="checkpoint file or run directory")
    parser.add_argument("--data", default="../shared/data/realworld-dev", help="folder of <digit>_*.png|jpg files and SOURCES.tsv")
    parser.add_argument("--save", help="write each preprocessed 28x28 image here")
    parser.add_argument("--threshold", type=float, default=0.9, help="confidence under which a reading is flagged uncertain")
    args = parser.parse_args()

    root = Path(args.data)
    paths = sorted(p for p in root.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"} and p.name[0].isdigit())
    styles = read_styles(root)
    reader = digitrec.load(args.model, threshold=args.threshold)
    readings = reader.read(paths, save_preprocessed=args.save)
    probabilities = reader.predict_proba(paths)
    labels = np.array([int(p.name[0]) for p in paths])
    predicted = np.array([-1 if r.digit is None else r.digit for r in readings])
    confidence = np.array([r.confidence for r in readings])
    uncertain = np.array([r.uncertain for r in readings])

    groups: dict[str, list[int]] = defaultdict(list)
    for i, path in enumerate(paths):
        style = styles.get(path.name, "unknown")
        groups[FAMILIES.get(style, style)].append(i)
    correct = predicted == labels
    truth = probabilities[np.arange(len(labels)), labels]
    print(f"model: {args.model} ({reader.engine.kind}, temperature {reader.temperature:.3f}), uncertain below {args.threshold}")
    print(f"{'family':<28} {'n':>3} {'accuracy':>9} {'p(true)':>8} {'flagged':>8}")
    for family, members in [*sorted(groups.items()), ("overall", list(range(len(paths))))]:
        print(f"{family:<28} {len(members):>3} {correct[members].mean():>9.1%} {truth[members].mean():>8.2f} {uncertain[members].sum():>8}")
    wrong = np.flatnonzero(~correct).tolist()
    print(f"wrong answers: {len(wrong)}; with confidence >= {CONFIDENT}: {sum(confidence[i] >= CONFIDENT for i in wrong)}; "
          f"not flagged uncertain: {sum(not uncertain[i] for i in wrong)}; right ones flagged: {int(uncertain[correct].sum())}")
    for i in sorted(wrong, key=lambda i: -float(confidence[i])):
        style = styles.get(paths[i].name, "unknown")
        flag = f"uncertain: {readings[i].reason}" if uncertain[i] else "not flagged"
        print(f"  {paths[i].name:<10} true {labels[i]} predicted {predicted[i]} ({confidence[i]:.2f}, {flag})  {style}")


if __name__ == "__main__":
    main()
