"""What several processes buy: one recipe trained alone and under torchrun, images per second, wall time and accuracy.

    python benchmarks/scaling.py [--recipes balanced,default] [--processes 1,2] [--data-dir DIR] [--seed 0]

Each row is one real run of ``digitrec train`` (1 process) or ``torchrun --standalone
--nproc_per_node=N -m digitrec train`` (N processes, each with cores/N threads), the same recipe
and global batch. Images per second count the training digits of every epoch over the time the
epochs took (validation included, start-up and export not); wall time is the whole command;
accuracy is on MNIST's 10,000 test digits. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="balanced,default")
    parser.add_argument("--processes", default="1,2")
    parser.add_argument("--data-dir", default=os.environ.get("DIGITREC_DATA"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from digitrec import checkpoint, data
    from digitrec.inference import predict_logits

    test = data.load("mnist", "test", args.data_dir)
    cores = os.cpu_count() or 1
    print("| recipe | processes | threads each | images/s | epochs' time (s) | wall time (s) | test accuracy |")
    print("|---|---|---|---|---|---|---|")
    for recipe in args.recipes.split(","):
        for processes in (int(n) for n in args.processes.split(",")):
            threads = max(1, cores // processes)
            out = Path(tempfile.mkdtemp(prefix="digitrec-scaling-")) / "run"
            train = ["-m", "digitrec", "train", "--recipe", recipe, "--seed", str(args.seed), "--out", str(out), "--quiet"]
            if args.data_dir:
                train += ["--data-dir", args.data_dir]
            launcher = [sys.executable] if processes == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                               f"--nproc_per_node={processes}"]
            started = time.perf_counter()
            subprocess.run([*launcher, *train], check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)},
                           stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - started
            history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line]
            count = checkpoint.read_metadata(out / "final.safetensors")["data"]["count"]
            seconds = sum(row["seconds"] for row in history)
            model = checkpoint.load(out).model
            accuracy = float((predict_logits(model, test.images).argmax(1).numpy() == test.labels).mean())
            print(f"| {recipe} | {processes} | {threads} | {count * len(history) / seconds:,.0f} | {seconds:.1f} | {wall:.1f} | "
                  f"{accuracy:.2%} |", flush=True)


if __name__ == "__main__":
    main()
