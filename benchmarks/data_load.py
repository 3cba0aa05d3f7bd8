"""How long loading all 70,000 MNIST images takes: first load (decode + verify) and cached loads.

    python benchmarks/data_load.py [--data-dir DIR]

Prints a table; the cache goes to a temporary folder so the first load is really the first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("DIGITREC_DATA"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="digitrec-bench-")
    from digitrec import data

    def load_all() -> float:
        started = time.perf_counter()
        train, test = data.load_mnist("train", args.data_dir), data.load_mnist("test", args.data_dir)
        assert len(train) + len(test) == 70_000
        return time.perf_counter() - started

    first = load_all()
    cached = [load_all() for _ in range(args.repeats)]
    print("| load | seconds |")
    print("|---|---|")
    print(f"| first (gunzip, parse, verify SHA-256, write cache) | {first:.3f} |")
    print(f"| cached, median of {args.repeats} | {statistics.median(cached):.3f} |")


if __name__ == "__main__":
    main()
