"""Build the model that ships inside the package: the default recipe, seed 0, with its provenance.

    python tools/bundle_model.py                 # train it (about 10 min on two CPU cores), evaluate, write it
    python tools/bundle_model.py --run RUN_DIR   # package a default-recipe run trained before

Writes ``src/digitrec/assets/default.safetensors`` and its ONNX export ``default.onnx``. Their
metadata says how they were made: the command, the recipe and seed, the data checksum, the library
versions and the accuracy on MNIST's 10,000 test digits. `make model` runs this.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from datetime import datetime
from pathlib import Path

from digitrec import checkpoint, data, plans, rundir, training
from digitrec.export import export_onnx
from digitrec.inference import TorchEngine
from digitrec.metrics import Evaluation
from digitrec.recipes import Recipe

ASSETS = Path(__file__).resolve().parents[1] / "src" / "digitrec" / "assets"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a finished run of the default recipe to package instead of training one")
    parser.add_argument("--out", type=Path, default=ASSETS, help="where to write default.safetensors and default.onnx")
    args = parser.parse_args()
    run = args.run
    if run is None:
        run = rundir.new_run_dir("bundled")
        training.train(plans.PRESETS["default"], out=run, seed=0, progress=False)
    config = rundir.read_config(run)
    default = plans.PRESETS["default"]
    if (config["model"], config["arguments"], Recipe.from_dict(config["recipe"]), config["seed"]) != \
            (default.model, default.arguments, default.recipe, 0):
        sys.exit(f"{run}: not a seed-0 run of the default recipe as it is now")
    loaded = checkpoint.load(run / rundir.FINAL)
    test = data.load("mnist", "test")
    accuracy = Evaluation.from_logits(TorchEngine(run, loaded.model, loaded.meta).logits(test.images), test.labels).accuracy
    provenance = {"command": "make model (" + shlex.join(["python", "tools/bundle_model.py", *sys.argv[1:]]) + ")",
                  "recipe": "default", "seed": 0, "run": run.name, "built": datetime.now().isoformat(timespec="seconds"),
                  "test_data": {"name": test.name, "checksum": test.checksum}, "test_accuracy": accuracy}
    meta = {key: value for key, value in loaded.meta.items() if key not in ("format", "format_version", "architecture", "arguments",
                                                                            "parameters", "reported", "preprocessing", "labels",
                                                                            "versions")}
    target = args.out / "default.safetensors"
    checkpoint.save(target, loaded.model, loaded.architecture, loaded.meta["arguments"], **meta, name="bundled default",
                    provenance=provenance)
    export_onnx(target, args.out / "default.onnx")
    print(f"{target} and default.onnx: {accuracy:.2%} on {test.name}")


if __name__ == "__main__":
    main()
