"""The ``digitrec`` command: argument parsing and printing over the Python API.

Exit codes: 0 success, 2 bad input (one line on stderr, no traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from digitrec.errors import DigitrecError

if TYPE_CHECKING:
    from digitrec.predict import Reading

KAGGLE_VALIDATION = 0.1  # share of Kaggle's train.csv held out when the recipe holds out none


def _models(args: argparse.Namespace) -> None:
    from digitrec import models

    print(f"{'name':<18} {'parameters':>11}  {'reported':<24} description")
    for name, spec in models.REGISTRY.items():
        count = "members'" if spec.composite else f"{models.parameter_count(spec.build()):,}"
        print(f"{name:<18} {count:>11}  {spec.reported:<24} {spec.summary}")
    print(f"\n{'recipe':<18} {'parameters':>11}  description")
    for name, preset in models.PRESETS.items():
        count = models.parameter_count(models.create(preset.model, **preset.arguments))
        print(f"{name:<18} {count:>11,}  {preset.model} {preset.arguments}: {preset.summary}")


def _train(args: argparse.Namespace) -> None:
    from digitrec import models, training

    if args.resume:
        result = training.resume(args.resume, device=args.device, progress=not args.quiet)
    else:
        if args.model and args.recipe:
            raise DigitrecError("give --model (with its own recipe) or --recipe (a digitrec preset), not both", "--recipe")
        if args.model:
            if args.model not in models.REGISTRY or models.REGISTRY[args.model].composite:
                raise DigitrecError(f"unknown model {args.model!r} (ensembles come from `digitrec ensemble`); "
                                    "`digitrec models` lists them", "--model")
            preset = models.Preset(args.model, {}, models.REGISTRY[args.model].recipe, "")
        else:
            preset = models.PRESETS[args.recipe or "default"]
        if args.data.startswith("kaggle:") and args.validation is None and not preset.recipe.validation:
            # Kaggle's test.csv has no labels: the held-out part of train.csv is the only score before submitting
            args.validation = KAGGLE_VALIDATION
        recipe = training.with_overrides(
            preset.recipe,
            optimizer=args.optimizer, lr=args.lr, momentum=args.momentum, nesterov=args.nesterov,
            weight_decay=args.weight_decay, batch_size=args.batch_size, epochs=args.epochs, schedule=args.schedule,
            label_smoothing=args.label_smoothing, validation=args.validation, early_stopping=args.early_stopping,
            ema=args.ema, rotation=args.rotation, zoom=args.zoom, shift=args.shift, elastic=args.elastic,
        )
        result = training.train(preset.model, recipe, arguments=preset.arguments, data_spec=args.data, data_dir=args.data_dir, out=args.out,
                             seed=args.seed, device=args.device, keep_epochs=args.keep_epochs, progress=not args.quiet)
    print(f"run directory: {result.run_dir}")
    print(f"final model:   {result.final}")


def _ensemble(args: argparse.Namespace) -> None:
    from digitrec import training

    presets = args.recipe.split(",") if args.recipe else training.ENSEMBLE_PRESETS
    members = training.ENSEMBLE_MEMBERS if args.members is None else args.members
    result = training.train_ensemble(presets, members, out=args.out, seed=args.seed, data_spec=args.data,
                                     data_dir=args.data_dir, device=args.device, progress=not args.quiet)
    print(f"ensemble:      {result.final}")


def _evaluate(args: argparse.Namespace) -> None:
    from digitrec import report

    result = report.evaluate_model(args.model, args.data, args.data_dir, args.out, device=args.device,
                                   write_report=not args.no_report, engine=args.engine)
    if args.json:
        print(json.dumps(result.metrics))
        return
    m = result.metrics
    print(f"{m['architecture']} on {m['data']}: accuracy {m['accuracy']:.2%} ({m['errors']} errors in {m['count']}), "
          f"loss {m['loss']:.4f}, macro F1 {m['f1']:.4f}")
    if result.html:
        print(f"report: {result.html}")


def _predict(args: argparse.Namespace) -> None:
    from digitrec import images, predict

    if not 0.0 <= args.threshold <= 1.0:
        raise DigitrecError(f"{args.threshold} is not a probability (0-1)", "--threshold")
    reader = predict.load(args.model, args.engine, args.threshold)
    if args.images == ["-"]:
        try:
            inputs: list = [images.open_image(io.BytesIO(sys.stdin.buffer.read()))]
        except DigitrecError as e:
            raise DigitrecError(e.reason, "stdin") from None
        names = ["-"]
    else:
        inputs = predict.image_files(args.images)
        names = [str(path) for path in inputs]
    failed = 0
    for item, name in zip(inputs, names, strict=True):
        try:
            reading = reader.read([item], multi=args.multi, save_preprocessed=args.save_preprocessed, names=[name])[0]
        except DigitrecError as e:  # one bad file among many: say so and read the rest
            if len(inputs) == 1:
                raise
            print(f"digitrec: error: {e}", file=sys.stderr)
            failed += 1
            continue
        print(json.dumps(reading.to_dict()) if args.json else _reading_line(reading), flush=True)
    if failed:
        raise DigitrecError(f"{failed} of {len(inputs)} image(s) could not be read")


def _reading_line(reading: Reading) -> str:
    flag = f"  uncertain: {reading.reason}" if reading.uncertain else ""
    if reading.number is not None:
        parts = " ".join(f"{d.digit} ({d.confidence:.0%})" for d in reading.digits)
        return f"{reading.source}: {reading.number or '-'}  {reading.confidence:.1%}  [{parts}]{flag}"
    if reading.digit is None:
        return f"{reading.source}: -{flag}"
    top3 = ", ".join(f"{d} {p:.1%}" for d, p in reading.top3)
    return f"{reading.source}: {reading.digit}  {reading.confidence:.1%}  (top 3: {top3}){flag}"


def _submit(args: argparse.Namespace) -> None:
    from digitrec import predict

    rows = predict.load(args.model, args.engine).write_submission(args.test, args.out)
    print(f"{args.out}: {rows} predictions (ImageId,Label)")


def _export(args: argparse.Namespace) -> None:
    from digitrec.export import export_onnx

    print(f"ONNX model: {export_onnx(args.model, args.onnx)}")


def _compare(args: argparse.Namespace) -> None:
    from digitrec import report

    print(f"comparison: {report.compare_runs(args.runs, args.out)}")


def _data_stats(args: argparse.Namespace) -> None:
    import numpy as np

    from digitrec import data, plots

    digits = data.load(args.data, args.part, args.data_dir)
    counts = data.class_counts(digits)
    print(f"{digits.name}: {len(digits)} images")
    for digit, count in enumerate(counts):
        print(f"  {digit}: {count:>6}  {count / max(1, len(digits)):6.2%}")
    out = Path(args.out or f"reports/data-{digits.name.replace(':', '-')}")
    out.mkdir(parents=True, exist_ok=True)
    plots.class_histogram(counts, out / "class_histogram.png", f"{digits.name}: images per class")
    sample = np.random.default_rng(0).permutation(len(digits))[:50]
    captions = [f"label {int(digits.labels[i])}" if digits.labels[i] >= 0 else "" for i in sample]
    plots.digit_grid(digits.images[sample], captions, out / "samples.png", f"{digits.name}: random samples")
    print(f"plots: {out / 'class_histogram.png'}, {out / 'samples.png'}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="digitrec", description="Handwritten digit recognition.")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("models", help="list every architecture with its parameter count").set_defaults(run=_models)

    engine_help = "auto: ONNX Runtime on an .onnx file or a run directory's current final.onnx, else PyTorch"
    data_help = "data source: mnist (default), npz:PATH, kaggle:PATH.csv, folder:DIR"
    t = commands.add_parser("train", help="train a model into a run directory")
    t.add_argument("--model", help="a registered architecture, trained with its own recipe (see `digitrec models`)")
    t.add_argument("--recipe", choices=["fast", "balanced", "default", "elastic"],
                   help="digitrec's presets: fast (7-9 s), balanced (~1 min), default (best single model, ~10 min), "
                        "elastic (default on elastically warped digits)")
    t.add_argument("--data", default="mnist", help=data_help)
    t.add_argument("--data-dir", help="folder with the MNIST files (default: $DIGITREC_DATA or the user cache)")
    t.add_argument("--out", help="run directory (default: a new folder under runs/)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    t.add_argument("--keep-epochs", action="store_true", help="also keep every epoch's checkpoint (epoch-NNN.safetensors)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    recipe = t.add_argument_group("recipe (defaults: the model's own recipe)")
    recipe.add_argument("--optimizer", choices=["sgd", "adam", "adamw", "rmsprop", "adadelta"])
    recipe.add_argument("--lr", type=float)
    recipe.add_argument("--momentum", type=float)
    recipe.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None)
    recipe.add_argument("--weight-decay", type=float)
    recipe.add_argument("--batch-size", type=int)
    recipe.add_argument("--epochs", type=int)
    recipe.add_argument("--schedule", choices=["constant", "step", "plateau", "onecycle", "cosine"])
    recipe.add_argument("--label-smoothing", type=float)
    recipe.add_argument("--validation", type=float, help="share of the training data held out (stratified; kaggle: data 0.1 unless given)")
    recipe.add_argument("--early-stopping", type=int, metavar="EPOCHS", help="patience in epochs; 0 = off")
    recipe.add_argument("--ema", type=float, metavar="DECAY", help="average the weights (e.g. 0.999); 0 = off")
    recipe.add_argument("--rotation", type=float, metavar="DEGREES")
    recipe.add_argument("--zoom", type=float, metavar="FRACTION")
    recipe.add_argument("--shift", type=float, metavar="FRACTION")
    recipe.add_argument("--elastic", type=float, metavar="PIXELS", help="strength of elastic warps in pixels (the elastic preset: 36)")
    t.set_defaults(run=_train)

    n = commands.add_parser("ensemble", help="train several models and combine them into one")
    n.add_argument("--members", type=int, help="how many models to train and combine (default: 4)")
    n.add_argument("--recipe", metavar="PRESET[,PRESET...]",
                   help="member N uses the Nth preset, cycling (default: default)")
    n.add_argument("--data", default="mnist", help=data_help)
    n.add_argument("--data-dir")
    n.add_argument("--out", help="ensemble directory (default: a new folder under runs/); run again to continue it")
    n.add_argument("--seed", type=int, default=0, help="member N is trained with seed + N")
    n.add_argument("--device", default="auto")
    n.add_argument("--quiet", action="store_true")
    n.set_defaults(run=_ensemble)

    e = commands.add_parser("evaluate", help="metrics, plots and a report for a model")
    e.add_argument("model", help="checkpoint file, run directory or exported .onnx file")
    e.add_argument("--data", default="mnist", help=data_help + " (the test part where there is one)")
    e.add_argument("--data-dir")
    e.add_argument("--out", help="report folder (default: RUN_DIR/report or beside the checkpoint)")
    e.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    e.add_argument("--no-report", action="store_true", help="metrics only: no figures, no report files")
    e.add_argument("--device", default="cpu")
    e.add_argument("--engine", choices=("auto", "torch", "onnx"), default="auto", help=engine_help)
    e.set_defaults(run=_evaluate)

    p = commands.add_parser("predict", help="read the digit in images: files, folders, or - for one image on stdin")
    p.add_argument("model", help="run directory, checkpoint or exported .onnx file")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, GIF, BMP, WebP, TIFF), folders, or -")
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    p.add_argument("--multi", action="store_true", help="each image holds a number: read its digits left to right")
    p.add_argument("--threshold", type=float, default=0.9, help="flag readings less confident than this (default 0.9)")
    p.add_argument("--save-preprocessed", metavar="DIR", help="write the 28x28 images the model saw")
    p.add_argument("--engine", choices=("auto", "torch", "onnx"), default="auto", help=engine_help)
    p.set_defaults(run=_predict)

    k = commands.add_parser("submit", help="a Kaggle Digit Recognizer submission for test.csv")
    k.add_argument("model", help="run directory, checkpoint or exported .onnx file")
    k.add_argument("--test", required=True, help="the competition's test.csv (pixel0..pixel783)")
    k.add_argument("-o", "--out", default="submission.csv", help="where to write ImageId,Label (default submission.csv)")
    k.add_argument("--engine", choices=("auto", "torch", "onnx"), default="auto", help=engine_help)
    k.set_defaults(run=_submit)

    x = commands.add_parser("export", help="export a model to ONNX")
    x.add_argument("model", help="run directory or checkpoint")
    x.add_argument("--onnx", metavar="OUT.onnx", help="output file (default: RUN_DIR/final.onnx or beside the checkpoint)")
    x.set_defaults(run=_export)

    c = commands.add_parser("compare", help="one report comparing several runs")
    c.add_argument("runs", nargs="+", metavar="RUN_DIR")
    c.add_argument("--out", default="reports/compare", help="report folder (default: reports/compare)")
    c.set_defaults(run=_compare)

    d = commands.add_parser("data", help="inspect data sets")
    data_commands = d.add_subparsers(dest="data_command", required=True)
    s = data_commands.add_parser("stats", help="counts per class, class histogram and sample grid")
    s.add_argument("--data", default="mnist", help=data_help)
    s.add_argument("--part", default="train", choices=["train", "test"])
    s.add_argument("--data-dir")
    s.add_argument("--out", help="folder for the plots (default: reports/data-NAME)")
    s.set_defaults(run=_data_stats)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except DigitrecError as e:
        print(f"digitrec: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("digitrec: interrupted; a training run continues with `digitrec train --resume RUN_DIR`", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
