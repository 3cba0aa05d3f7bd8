"""Time `digitrec submit` on a Kaggle-sized test.csv: 28,000 rows, parsing included.

    python benchmarks/kaggle_submit.py --model runs/default-... [--data-dir ../shared/data/mnist] [--repeats 3]

Kaggle's test.csv is not here, so one of the same shape is written from MNIST digits (the 10,000
test images and the first 18,000 training images, in Kaggle's header and integer format). Each
repeat runs the real command in a fresh process, Python start-up included, and checks the
submission: header, 28,000 rows, ImageId 1..28,000 in order, and accuracy against the known labels.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from digitrec import data
from digitrec.choices import ENGINES

ROWS = 28_000


def write_test_csv(path: Path, images: np.ndarray) -> None:
    header = ",".join(f"pixel{i}" for i in range(784))
    np.savetxt(path, images.reshape(len(images), -1), fmt="%d", delimiter=",", header=header, comments="")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="run directory, checkpoint or .onnx file")
    parser.add_argument("--data-dir", default="../shared/data/mnist", help="where the MNIST files are")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--engine", default="auto", choices=ENGINES)
    args = parser.parse_args()

    test, train = data.load_mnist("test", args.data_dir), data.load_mnist("train", args.data_dir)
    images = np.concatenate([test.images, train.images[: ROWS - len(test)]])
    labels = np.concatenate([test.labels, train.labels[: ROWS - len(test)]])
    with tempfile.TemporaryDirectory() as folder:
        test_csv, out = Path(folder) / "test.csv", Path(folder) / "submission.csv"
        write_test_csv(test_csv, images)
        print(f"test.csv: {ROWS:,} rows, {test_csv.stat().st_size / 1e6:.0f} MB; model {args.model}; "
              f"{platform.machine()}, Python {platform.python_version()}")
        seconds = []
        for repeat in range(args.repeats):
            out.unlink(missing_ok=True)
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "digitrec", "submit", args.model, "--test", str(test_csv), "-o", str(out),
                            "--engine", args.engine], check=True, stdout=subprocess.DEVNULL)
            seconds.append(time.perf_counter() - started)
            lines = out.read_text().splitlines()
            assert lines[0] == "ImageId,Label" and len(lines) == ROWS + 1
            ids, predicted = np.array([line.split(",") for line in lines[1:]], dtype=np.int64).T
            assert (ids == np.arange(1, ROWS + 1)).all()
            print(f"run {repeat + 1}: {seconds[-1]:.2f} s, agreement with the true labels {np.mean(predicted == labels):.2%}")
        print(f"median {statistics.median(seconds):.2f} s for {ROWS:,} rows (target <= 10 s)")


if __name__ == "__main__":
    main()
