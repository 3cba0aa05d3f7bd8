"""Speed and accuracy of digitrec's recipes and of two seed recipes, on this machine.

    python benchmarks/speed.py [--recipes fast balanced default] [--seeds 0 1 2] [--seed-models ...]
                               [--ensemble MEMBERS [--ensemble-seeds 0 ...] [--ensemble-recipe R]]

Each run is the real command, `digitrec train --recipe R --seed S --keep-epochs`, timed as a whole
(Python start-up included) with the data already on disk. Afterwards, outside the timed command,
every kept epoch is evaluated on the MNIST test set to report when it first reached 99.0 / 99.5 /
99.7 %: reported, never used to choose anything. Time to X = the command's start-up and tail plus
the training time elapsed up to that epoch. Also printed: the CPU's fp32 matmul GFLOP/s and each
recipe's achieved training GFLOP/s (FLOPs counted by torch's FlopCounterMode on forward+backward).

With ``--ensemble N``, `digitrec ensemble --members N --seed S` is timed as a whole too (ensemble
seed S trains members with seeds S*N ... S*N+N-1, so no two ensembles share a member). Inference
is timed last: `digitrec evaluate DIR --no-report`, three times each, for the first run of each
recipe and for each ensemble.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from digitrec import checkpoint, data, models, rundir
from digitrec.inference import TorchEngine
from digitrec.metrics import Evaluation
from digitrec.rundir import read_history

THRESHOLDS = (0.990, 0.995, 0.997)


def matmul_gflops(size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def training_flops_per_image(model_name: str, arguments: dict) -> float:
    model = models.create(model_name, **arguments).train()
    x = torch.rand(64, 1, 28, 28)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), torch.randint(0, 10, (64,))).backward()
    return counter.get_total_flops() / 64


def timed(command: list[str]) -> float:
    """Wall seconds of a whole command (Python start-up included); its output is discarded."""
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def run(label: str, argv: list[str], seed: int, out: Path, test: data.Digits) -> dict:
    wall = timed([sys.executable, "-m", "digitrec", "train", *argv, "--seed", str(seed), "--out", str(out), "--keep-epochs", "--quiet"])
    history = read_history(out)
    overhead = wall - history[-1]["elapsed"]  # start-up before the first epoch and the tail after the last
    reached: dict[float, float | None] = dict.fromkeys(THRESHOLDS)
    accuracy = 0.0
    for row in history:
        logits = TorchEngine.open(out / rundir.epoch_file(row["epoch"])).logits(test.images)
        accuracy = Evaluation.from_logits(logits, test.labels).accuracy
        for threshold in THRESHOLDS:
            if reached[threshold] is None and accuracy >= threshold:
                reached[threshold] = overhead + row["elapsed"]
    meta = checkpoint.read_metadata(out / rundir.FINAL)
    images = meta["data"]["count"] * len(history)
    return {"label": label, "seed": seed, "epochs": len(history), "wall": wall, "reached": reached, "accuracy": accuracy,
            "images_per_s": images / history[-1]["elapsed"], "model": meta["architecture"], "arguments": meta["arguments"],
            "dir": out}


def run_ensemble(recipe: str, members: int, seed: int, out: Path, test: data.Digits) -> dict:
    wall = timed([sys.executable, "-m", "digitrec", "ensemble", "--members", str(members), "--seed", str(seed * members),
                  "--recipe", recipe, "--out", str(out), "--quiet"])
    accuracy = Evaluation.from_logits(TorchEngine.open(out).logits(test.images), test.labels).accuracy
    return {"label": f"ensemble of {members} {recipe}", "seed": seed, "wall": wall, "accuracy": accuracy, "dir": out}


def evaluate_seconds(run_dir: Path, repeats: int = 3) -> list[float]:
    """Wall seconds of the whole `digitrec evaluate` command (start-up and loading included)."""
    return [timed([sys.executable, "-m", "digitrec", "evaluate", str(run_dir), "--no-report"]) for _ in range(repeats)]


def fmt_time(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="*", default=["fast", "balanced", "default"])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--seed-models", nargs="*", default=["seed003-final", "seed001-cnn5"],
                        help="seed models run once each with their report's recipe, for the speed-up")
    parser.add_argument("--ensemble", type=int, metavar="MEMBERS", help="also time `digitrec ensemble --members MEMBERS`")
    parser.add_argument("--ensemble-seeds", nargs="*", type=int, default=[0])
    parser.add_argument("--ensemble-recipe", default="default", metavar="PRESET[,PRESET...]",
                        help="digitrec ensemble's --recipe: the members' presets, cycling")
    parser.add_argument("--keep", help="keep the run directories here (default: a temporary folder)")
    args = parser.parse_args()
    if not os.environ.get("DIGITREC_DATA"):
        sys.exit("set DIGITREC_DATA to the folder with MNIST (e.g. ../shared/data/mnist)")
    root = Path(args.keep or tempfile.mkdtemp(prefix="digitrec-speed-"))
    test = data.load_mnist("test")
    gflops = matmul_gflops()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; fp32 2048x2048 matmul: {gflops:.0f} GFLOP/s\n")

    results = []
    for recipe in args.recipes:
        for seed in args.seeds:
            results.append(run(recipe, ["--recipe", recipe], seed, root / f"{recipe}-{seed}", test))
            print(f"  done: {recipe} seed {seed}", file=sys.stderr)
    for name in args.seed_models:
        results.append(run(name, ["--model", name], 0, root / name, test))
        print(f"  done: {name}", file=sys.stderr)

    ensembles = []
    for seed in args.ensemble_seeds if args.ensemble else []:
        ensembles.append(run_ensemble(args.ensemble_recipe, args.ensemble, seed, root / f"ensemble-{seed}", test))
        print(f"  done: ensemble seed {seed}", file=sys.stderr)
    inference = {r["label"]: evaluate_seconds(r["dir"]) for r in results if r["label"] in args.recipes and r["seed"] == args.seeds[0]}
    inference |= {f"{e['label']} (seed {e['seed']})": evaluate_seconds(e["dir"]) for e in ensembles}

    print("| recipe | seed | epochs | wall s | to 99.0 % | to 99.5 % | to 99.7 % | test acc | images/s | train GFLOP/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    flops_cache: dict[str, float] = {}
    for r in results:
        key = json.dumps([r["model"], r["arguments"]])
        flops_cache.setdefault(key, training_flops_per_image(r["model"], r["arguments"]))
        achieved = flops_cache[key] * r["images_per_s"] / 1e9
        times = " | ".join(fmt_time(r["reached"][t]) for t in THRESHOLDS)
        print(f"| {r['label']} | {r['seed']} | {r['epochs']} | {r['wall']:.1f} | {times} | {r['accuracy']:.2%} | "
              f"{r['images_per_s']:.0f} | {achieved:.0f} ({achieved / gflops:.0%} of matmul) |")

    print("\n| recipe | median wall s | median test acc | runs |")
    print("|---|---|---|---|")
    for label in dict.fromkeys(r["label"] for r in results):
        group = [r for r in results if r["label"] == label]
        print(f"| {label} | {statistics.median(r['wall'] for r in group):.1f} | "
              f"{statistics.median(r['accuracy'] for r in group):.2%} | {len(group)} |")

    if ensembles:
        print("\n| ensemble | seed | wall s | test acc |")
        print("|---|---|---|---|")
        for e in ensembles:
            print(f"| {e['label']} | {e['seed']} | {e['wall']:.1f} | {e['accuracy']:.2%} |")
        print(f"| {ensembles[0]['label']} | median | {statistics.median(e['wall'] for e in ensembles):.1f} | "
              f"{statistics.median(e['accuracy'] for e in ensembles):.2%} |")

    if inference:
        print("\n| model | `digitrec evaluate --no-report` wall s (3 runs) | median |")
        print("|---|---|---|")
        for label, seconds in inference.items():
            print(f"| {label} | {', '.join(f'{s:.2f}' for s in seconds)} | {statistics.median(seconds):.2f} |")

    fast = [r["reached"][0.990] for r in results if r["label"] == "fast" and r["reached"][0.990] is not None]
    for name in args.seed_models:
        seed_run = next(r for r in results if r["label"] == name)
        if fast and seed_run["reached"][0.990] is not None:
            ratio = seed_run["reached"][0.990] / statistics.median(fast)
            print(f"\n{name}: 99.0 % after {seed_run['reached'][0.990]:.0f} s; `--recipe fast` is {ratio:.0f}x faster to 99.0 %")
        elif not seed_run["reached"][0.990]:
            print(f"\n{name}: never reached 99.0 % (final {seed_run['accuracy']:.2%})")


if __name__ == "__main__":
    main()
