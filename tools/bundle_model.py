"""Build a model that ships inside the package, with its provenance: the digit model, the row reader or the detector.

    python tools/bundle_model.py                   # the default recipe, seed 0 (10-20 min on two CPU cores)
    python tools/bundle_model.py --model rows      # the row reader (~35 min)
    python tools/bundle_model.py --model detector  # the digit detector (~12 min)
    python tools/bundle_model.py --model rows --run RUN_DIR   # package a seed-0 run of it trained before

Each is trained as every model is, by :func:`digitrec.train` (``digitrec train --model rows``
and so on: a run directory, resumable). The digit model is evaluated on MNIST's test set and
written as ``src/digitrec/assets/default.safetensors`` with its ONNX export ``default.onnx``; the
row reader and the detector, which the package runs only through ONNX Runtime, as ``rows.onnx``
and ``detector.onnx``. Their metadata says how they were made: the command, the recipe and seed,
the data checksum, the library versions and the held-out (or test) figures. `make model`,
`make rows` and `make detector` run this.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from digitrec import checkpoint, data, plans, rundir, training
from digitrec.export import export_onnx
from digitrec.inference import TorchEngine
from digitrec.metrics import Evaluation
from digitrec.recipes import Recipe

ASSETS = Path(__file__).resolve().parents[1] / "src" / "digitrec" / "assets"
MODELS = {"default": "model", "rows": "rows", "detector": "detector"}  # what can be bundled, and the make target of each


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=MODELS, default="default", help="what to build (default: the digit model)")
    parser.add_argument("--run", type=Path, help="a finished seed-0 run of it to package instead of training one")
    parser.add_argument("--out", type=Path, default=ASSETS, help="the folder to write it in (default: the package's assets)")
    args = parser.parse_args()
    plan = plans.resolve(args.model)
    run = args.run
    if run is None:
        run = rundir.new_run_dir(f"bundled-{args.model}")
        training.train(plan, out=run, seed=0, progress=False)
    config = rundir.read_config(run)
    if (config["model"], config["arguments"], Recipe.from_dict(config["recipe"]), config["seed"], config["data"]) != \
            (plan.model, plan.arguments, plan.recipe, 0, "mnist"):
        sys.exit(f"{run}: not a seed-0 run of {args.model} on mnist as it is now")
    loaded = checkpoint.load(run / rundir.FINAL)
    provenance = {"command": f"make {MODELS[args.model]} (" + shlex.join(["python", "tools/bundle_model.py", *sys.argv[1:]]) + ")",
                  "recipe": args.model, "seed": 0, "run": run.name, "built": datetime.now().isoformat(timespec="seconds"),
                  "training_seconds": round(rundir.read_history(run)[-1]["elapsed"])}
    if args.model == "default":
        test = data.load("mnist", "test")
        accuracy = Evaluation.from_logits(TorchEngine(run, loaded.model, loaded.meta).logits(test.images), test.labels).accuracy
        provenance.update(test_data={"name": test.name, "checksum": test.checksum}, test_accuracy=accuracy)
        target = args.out / "default.safetensors"
        checkpoint.resave(target, loaded, name="bundled default", provenance=provenance)
        export_onnx(target, args.out / "default.onnx")
        print(f"{target} and default.onnx: {accuracy:.2%} on {test.name}")
        return
    with tempfile.TemporaryDirectory() as scratch:  # only the ONNX export ships: the package runs it with ONNX Runtime
        annotated = Path(scratch) / f"{args.model}.safetensors"
        checkpoint.resave(annotated, loaded, name=f"bundled {args.model}", provenance=provenance)
        target = export_onnx(annotated, args.out / f"{args.model}.onnx")
    figures = {k: v for k, v in loaded.meta["metrics"].items() if k.startswith("val_")}
    print(f"{target}: held out {figures}")


if __name__ == "__main__":
    main()
