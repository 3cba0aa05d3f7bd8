"""The ``digitrec`` command: argument parsing and printing over the Python API.

Exit codes: 0 success, 2 bad input (one line on stderr, no traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import itertools
import json
import os
import shlex
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from digitrec.choices import ENGINES, FORMAT_NAMES, UNCERTAIN_BELOW
from digitrec.errors import DigitrecError, TrainingInterrupted

if TYPE_CHECKING:
    from digitrec.distributed import Group as Distributed
    from digitrec.plans import Plan
    from digitrec.predict import Reading
    from digitrec.training import RunResult

THRESHOLD_HELP = f"flag readings less confident than this (default {UNCERTAIN_BELOW}; 0: flag none as not clearly a digit)"

ENGINE_HELP = "auto: ONNX Runtime on an .onnx file or a run directory's current final.onnx, else PyTorch"
DATA_HELP = "data source: mnist (default), npz:PATH, kaggle:PATH.csv, folder:DIR"
DATA_DIR_HELP = "folder with the four MNIST files (default: $DIGITREC_DATA, else the user cache, downloading them there)"
DEVICE_HELP = "auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N or mps"

RESUME_KEEPS = "only --epochs, --device and --quiet go with --resume: a resumed run keeps the configuration it was started with"


def _models(args: argparse.Namespace) -> None:
    from digitrec import models, plans

    print(f"{'name':<18} {'parameters':>11}  {'reported':<24} description")
    for name, spec in models.REGISTRY.items():
        count = "members'" if spec.composite else f"{models.parameter_count(spec.build()):,}"
        trained_on = f" (trains on {spec.data})" if spec.data != "mnist" else ""
        print(f"{name:<18} {count:>11}  {spec.reported:<24} {spec.summary}{trained_on}")
    print(f"\n{'recipe':<18} {'parameters':>11}  description")
    for name, preset in plans.PRESETS.items():
        count = models.parameter_count(models.create(preset.model, **preset.arguments))
        print(f"{name:<18} {count:>11,}  {preset.model} {preset.arguments}: {preset.summary}")


def _recipe_options(args: argparse.Namespace) -> dict[str, object]:
    """The recipe fields given on the command line: the options :func:`_add_train` made from the same list."""
    from digitrec.recipes import options

    return {option.name: getattr(args, option.name) for option in options() if getattr(args, option.name, None) is not None}


@contextlib.contextmanager
def _launched(device: str) -> Iterator[Distributed]:
    """The processes torchrun started with this one (alone, unless it started several), for as long as the command runs."""
    from digitrec import distributed
    from digitrec.inference import resolve_device

    global _IN_A_GROUP
    group = distributed.join(resolve_device(device))
    _IN_A_GROUP = _IN_A_GROUP or group.size > 1
    try:
        yield group
    except BaseException:  # this rank failed or was stopped: the others may never reach a barrier
        distributed.leave()
        raise
    distributed.leave(together=True)


_IN_A_GROUP = False  # whether this process trained in a torchrun group (see main)


def _train(args: argparse.Namespace) -> None:
    overrides = _recipe_options(args)
    if args.dry_run:
        _estimate_training(args, overrides)
        return
    with _launched(args.device) as group:
        result = _train_in(args, overrides, group)
    if group.leader:
        print(f"run directory: {result.run_dir}")
        print(f"final model:   {result.final}")


def _train_in(args: argparse.Namespace, overrides: dict[str, object], group: Distributed) -> RunResult:
    from digitrec import training

    if args.resume:
        others = {"--model": args.model, "--recipe": args.recipe, "--data": args.data, "--data-dir": args.data_dir, "--out": args.out,
                  "--seed": args.seed, "--keep-epochs": args.keep_epochs or None, "--watch": args.watch,
                  "--tensorboard": args.tensorboard}
        given = [flag for flag, value in others.items() if value is not None]
        given += ["--" + name.replace("_", "-") for name in overrides if name != "epochs"]
        if given:
            raise DigitrecError(RESUME_KEEPS, given[0])
        return training.resume(args.resume, epochs=args.epochs, device=args.device, group=group, progress=not args.quiet)
    return training.train(_plan(args, overrides), data_dir=args.data_dir, out=args.out, seed=args.seed or 0, device=args.device,
                          keep_epochs=args.keep_epochs, watch=args.watch, tensorboard=args.tensorboard, group=group,
                          progress=not args.quiet)


def _plan(args: argparse.Namespace, overrides: dict[str, object]) -> Plan:
    """What a new run trains, from the command line."""
    from digitrec import plans

    return plans.resolve(args.model, args.recipe, data=args.data, **overrides)


def _estimate_training(args: argparse.Namespace, overrides: dict[str, object]) -> None:
    from digitrec import experiments, training
    from digitrec.recipes import epochs_text

    if args.resume:
        raise DigitrecError("times a new run; a run being resumed times itself as it goes", "--dry-run")
    plan = _plan(args, overrides)
    per_epoch = training.seconds_per_epoch(plan, plan.data, args.data_dir, device=args.device)
    print(f"{plan.model}, {epochs_text(plan.recipe.epochs)} on {plan.data}: ~{experiments.duration(per_epoch * plan.recipe.epochs)} "
          f"of training on this machine (~{experiments.duration(per_epoch)} an epoch, from a few timed steps; nothing trained)")


def _ensemble(args: argparse.Namespace) -> None:
    from digitrec import training

    presets = args.presets.split(",") if args.presets else training.ENSEMBLE_PRESETS
    members = training.ENSEMBLE_MEMBERS if args.members is None else args.members
    with _launched(args.device) as group:
        result = training.train_ensemble(presets, members, out=args.out, seed=args.seed, data_spec=args.data,
                                         data_dir=args.data_dir, device=args.device, group=group, progress=not args.quiet)
    if group.leader:
        print(f"ensemble:      {result.final}")


def _experiment(args: argparse.Namespace) -> None:
    from digitrec import experiments

    experiment = experiments.load(args.file)
    out = Path(args.out) if args.out else Path("runs") / "experiments" / experiment.name
    report_dir = Path(args.report) if args.report else Path("reports") / experiment.name
    if args.dry_run:
        planned = experiments.plan(experiment, out)
        print(f"{experiment.title}: {len(planned)} runs under {out}")
        print(experiments.describe(planned, experiments.estimate_seconds(planned)))
        return
    with _launched(args.device) as group:
        page = experiments.run(experiment, out, report_dir, force=args.force, device=args.device, group=group, progress=not args.quiet)
    if page is not None:
        print(f"report: {page} (and experiment.md beside it)")


def _evaluate(args: argparse.Namespace) -> None:
    from digitrec import report

    result = report.evaluate_model(args.model, args.data, args.data_dir, args.out, device=args.device,
                                   write_report=not args.no_report, engine=args.engine)
    _say_bundled(args.model)
    if args.json:
        print(json.dumps(result.metrics))
        return
    m = result.metrics
    print(f"{m['architecture']} on {m['data']}: accuracy {m['accuracy']:.2%} ({m['errors']} errors in {m['count']}), "
          f"loss {m['loss']:.4f}, macro F1 {m['f1']:.4f}")
    if result.html:
        print(f"report: {result.html}")


def _image_inputs(arguments: list[str]) -> tuple[list[object], list[str], list[DigitrecError]]:
    """The images named on the command line: files, the images inside folders, and ``-`` for standard input."""
    from digitrec import predict

    if arguments.count("-") > 1:
        raise DigitrecError("'-' (standard input) can be given only once", "IMAGE")
    sources: list[object] = []
    names: list[str] = []
    empty: list[DigitrecError] = []
    for argument in arguments:
        if argument == "-":
            sources.append(sys.stdin.buffer.read())
            names.append("-")
        elif Path(argument).is_dir():
            found = predict.images_in(argument)
            if not found:
                empty.append(DigitrecError(f"no images found in this folder ({FORMAT_NAMES} files)", argument))
            sources += found
            names += [str(path) for path in found]
        else:  # a missing file is reported when it is read, like an unreadable one, and the others are still read
            sources.append(Path(argument))
            names.append(argument)
    return sources, names, empty


MODEL_SUFFIXES = (".safetensors", ".onnx", ".pt", ".pth", ".pkl")  # the pickles only to be refused by name


def _is_model(argument: str) -> bool:
    from digitrec import rundir

    path = Path(argument)
    if path.is_dir():
        return rundir.holds_run(path) or rundir.holds_ensemble(path) or (path / rundir.FINAL).is_file()
    return path.suffix.lower() in MODEL_SUFFIXES


def _say_bundled(model: str | None) -> None:
    if model is None:
        print("digitrec: using the bundled model (the default recipe; name a model to use another)", file=sys.stderr)


def _predict(args: argparse.Namespace) -> None:
    from digitrec import predict

    if not 0.0 <= args.threshold <= 1.0:
        raise DigitrecError(f"{args.threshold} is not a probability (0-1)", "--threshold")
    model, arguments = (args.inputs[0], args.inputs[1:]) if _is_model(args.inputs[0]) else (None, args.inputs)
    if not arguments:
        raise DigitrecError("no images given: digitrec predict [MODEL] IMAGE...", "IMAGE")
    reader = predict.load(model, args.engine, args.threshold, rows=args.rows, detector=args.detector)
    _say_bundled(model)
    sources, names, empty_folders = _image_inputs(arguments)
    total, failed = len(sources) + len(empty_folders), 0
    readings = reader.read_each(sources, multi=args.multi, save_preprocessed=args.save_preprocessed, names=names, explain=args.explain)
    for result in itertools.chain(empty_folders, readings):
        if isinstance(result, DigitrecError):
            if total == 1:
                raise result
            print(f"digitrec: error: {result}", file=sys.stderr, flush=True)
            failed += 1
        else:
            print(json.dumps(result.to_dict()) if args.json else _reading_line(result), flush=True)
    if failed:
        raise DigitrecError(f"{failed} of {total} input(s) could not be read")


def _explain(args: argparse.Namespace) -> None:
    from digitrec import report

    model, arguments = (args.inputs[0], args.inputs[1:]) if _is_model(args.inputs[0]) else (None, args.inputs)
    if not arguments:
        raise DigitrecError("no images given: digitrec explain [MODEL] IMAGE...", "IMAGE")
    _say_bundled(model)
    sources, _, empty_folders = _image_inputs(arguments)
    if empty_folders:
        raise empty_folders[0]
    print(f"explanation: {report.explanation_report(model, sources, args.out)} (and explain.md beside it)")


def _percent(probability: float) -> str:
    """A probability as people read it, never rounded up to certainty (the page's app.js says the same)."""
    return ">99.9%" if probability >= 0.9995 else f"{probability:.1%}"


def _reading_line(reading: Reading) -> str:
    flag = f"  uncertain: {reading.reason}" if reading.uncertain else ""
    if reading.number is not None:
        parts = " ".join(f"{d.digit} ({_percent(d.confidence)})" for d in reading.digits)
        return f"{reading.source}: {reading.number or '-'}  {_percent(reading.confidence)}  [{parts}]{flag}"
    if reading.digit is None:
        return f"{reading.source}: -{flag}"
    top3 = ", ".join(f"{d} {_percent(p)}" for d, p in reading.top3)
    return f"{reading.source}: {reading.digit}  {_percent(reading.confidence)}  (top 3: {top3}){flag}"


def _submit(args: argparse.Namespace) -> None:
    from digitrec import predict

    reader = predict.load(args.model, args.engine)
    _say_bundled(args.model)
    rows = reader.write_submission(args.test, args.out)
    print(f"{args.out}: {rows} predictions (ImageId,Label)")


def _check_address(host: str, port: int) -> None:
    """Bind once before loading anything, so that a bad or busy address is one line, not uvicorn's traceback."""
    import socket

    if not 0 <= port <= 65535:
        raise DigitrecError(f"{port} is not a port number (0-65535)", "--port")
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as e:
        raise DigitrecError(f"cannot listen on {host}:{port} ({e.strerror or e})", "--host/--port") from None


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from digitrec.server import create_app

    _check_address(args.host, args.port)
    given = (("max_body", args.max_body), ("max_pixels", args.max_pixels), ("body_timeout", args.timeout), ("max_batch", args.max_batch))
    limits = {name: value for name, value in given if value is not None}  # unset: the app's own defaults
    app = create_app(args.model, workers=args.workers, threshold=args.threshold, **limits)
    _say_bundled(args.model)
    workers = app.state.workers
    readers = f"{workers} reading process{'es' if workers > 1 else ''}"
    print(f"digitrec: serving the page and the API on http://{args.host}:{args.port} with {readers} (Ctrl+C stops)",
          file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_keep_alive=5, limit_concurrency=args.max_connections)


def _export(args: argparse.Namespace) -> None:
    from digitrec.export import export_onnx

    print(f"ONNX model: {export_onnx(args.model, args.onnx)}")


def _compare(args: argparse.Namespace) -> None:
    from digitrec import report

    print(f"comparison: {report.compare_runs(args.runs, args.out)}")


def _data_stats(args: argparse.Namespace) -> None:
    import numpy as np

    from digitrec import data
    from digitrec.files import check_writable_dir

    digits = data.load(args.data, args.part, args.data_dir)
    out = check_writable_dir(args.out or f"reports/data-{digits.name.replace(':', '-')}")
    pixels = digits.images.reshape(len(digits), -1).astype(np.float64)
    print(f"{digits.name}: {len(digits)} images")
    if len(digits):
        print(f"  pixels: mean {pixels.mean():.1f} of 255, sd {pixels.std():.1f}, {(pixels > 0).mean():.1%} non-zero; "
              f"blank images: {int((pixels.max(axis=1) == 0).sum())}")
    from digitrec import plots  # matplotlib: only once the data is known to be good

    plotted = []
    if digits.labelled:
        counts = data.class_counts(digits)
        for digit, count in enumerate(counts):
            print(f"  {digit}: {count:>6}  {count / max(1, len(digits)):6.2%}")
        plotted.append(plots.class_histogram(counts, out / "class_histogram.png", f"{digits.name}: images per class"))
    else:
        print("  no labels in this set (a test set): no counts per class")
    sample = np.random.default_rng(0).permutation(len(digits))[:50]
    captions = [f"label {int(digits.labels[i])}" if digits.labels[i] >= 0 else "" for i in sample]
    plotted.append(plots.digit_grid(digits.images[sample], captions, out / "samples.png", f"{digits.name}: random samples"))
    print(f"plots: {', '.join(map(str, plotted))}")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("digitrec")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="digitrec", description="Handwritten digit recognition.")
    parser.add_argument("--version", action="version", version=f"digitrec {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("models", help="list every architecture with its parameter count").set_defaults(run=_models)
    for add in (_add_train, _add_ensemble, _add_evaluate, _add_predict, _add_explain, _add_submit, _add_serve, _add_experiment,
                _add_export, _add_compare, _add_data):
        add(commands)
    _know_flags(parser)
    return parser


def _know_flags(parser: argparse.ArgumentParser) -> None:
    """Let each command name a bad argument by its option: the Python API says ``label_smoothing`` or ``max_batch``
    (the argument, the recipe field), the command line ``--label-smoothing`` or ``--max-batch``."""
    flags = {action.dest: max(action.option_strings, key=len) for action in parser._actions if action.option_strings}
    parser.set_defaults(flags=flags)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                _know_flags(command)


def _add_train(commands: argparse._SubParsersAction) -> None:
    from digitrec.plans import PRESETS  # no PyTorch: the presets and the recipes' fields are plain values
    from digitrec.recipes import options as recipe_options

    t = commands.add_parser("train", help="train a model into a run directory")
    t.add_argument("--model", help="a registered architecture, trained with its own recipe (see `digitrec models`), or a preset")
    t.add_argument("--recipe", choices=list(PRESETS),
                   help="digitrec's presets: fast (7-9 s), balanced (~1 min), default (best single model, 10-20 min on two cores), "
                        "elastic (default on elastically warped digits); default: default")
    t.add_argument("--data", help=DATA_HELP)
    t.add_argument("--data-dir", help=DATA_DIR_HELP)
    t.add_argument("--out", help="run directory, new or empty (default: a new folder under runs/)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run (with --epochs N: train it on to N epochs in all)")
    t.add_argument("--seed", type=int, help="seeds the weights, the shuffling and the augmentation (default 0): same seed, same numbers")
    t.add_argument("--device", default="auto", help=DEVICE_HELP)
    t.add_argument("--keep-epochs", action="store_true", help="also keep every epoch's checkpoint (epoch-NNN.safetensors)")
    t.add_argument("--watch", metavar="DATA", help="also measure this data's test part after every epoch, for the curves only "
                                                   "(nothing is chosen by it), as seed 003 watched MNIST's test set")
    t.add_argument("--tensorboard", metavar="DIR", help="also log each epoch's metrics for TensorBoard under DIR/RUN "
                                                        "(needs pip install tensorboard; a resumed run keeps logging there)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--dry-run", action="store_true", help="time a few steps and say how long training would take; train nothing")
    recipe = t.add_argument_group("recipe (defaults: the model's or preset's own recipe)")
    for option in recipe_options():
        flag, doc = "--" + option.name.replace("_", "-"), option.doc.replace("%", "%%")
        if option.type is bool:
            recipe.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=doc)
        else:
            recipe.add_argument(flag, type=option.type, choices=option.choices, metavar=option.metavar, help=doc)
    t.set_defaults(run=_train)


def _add_ensemble(commands: argparse._SubParsersAction) -> None:
    from digitrec.plans import PRESETS  # no PyTorch: the presets and the recipes' fields are plain values

    n = commands.add_parser("ensemble", help="train several models and combine them into one")
    n.add_argument("--members", type=int, help="how many models to train and combine (default: 4)")
    n.add_argument("--recipe", dest="presets", metavar="PRESET[,PRESET...]",
                   help=f"member N uses the Nth preset, cycling; presets: {', '.join(PRESETS)} (default: default)")
    n.add_argument("--data", default="mnist", help=DATA_HELP)
    n.add_argument("--data-dir", help=DATA_DIR_HELP)
    n.add_argument("--out", help="ensemble directory (default: a new folder under runs/); run again to continue it")
    n.add_argument("--seed", type=int, default=0, help="member N is trained with seed + N (default 0)")
    n.add_argument("--device", default="auto", help=DEVICE_HELP)
    n.add_argument("--quiet", action="store_true", help="no progress bars")
    n.set_defaults(run=_ensemble)


def _add_evaluate(commands: argparse._SubParsersAction) -> None:
    e = commands.add_parser("evaluate", help="metrics, plots and a report for a model")
    e.add_argument("model", nargs="?", help="checkpoint file, run directory or exported .onnx file (default: the bundled model)")
    e.add_argument("--data", default="mnist", help=DATA_HELP + " (the test part where there is one)")
    e.add_argument("--data-dir", help=DATA_DIR_HELP)
    e.add_argument("--out", help="report folder (default: RUN_DIR/report or beside the checkpoint)")
    e.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    e.add_argument("--no-report", action="store_true", help="metrics only: no figures, no report files")
    e.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or mps; only --engine torch runs off the CPU")
    e.add_argument("--engine", choices=ENGINES, default="auto", help=ENGINE_HELP)
    e.set_defaults(run=_evaluate)


def _add_predict(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("predict", help="read the digit in images: files, folders, or - for one image on stdin",
                            usage="digitrec predict [-h] [options] [MODEL] IMAGE [IMAGE ...]")
    p.add_argument("inputs", nargs="+", metavar="[MODEL] IMAGE",
                   help=f"a run directory, checkpoint or .onnx file (default: the bundled model), then image files ({FORMAT_NAMES}), "
                        "folders of them, and - for one image on standard input")
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    p.add_argument("--multi", action="store_true", help="each image holds a number: read its digits left to right")
    p.add_argument("--threshold", type=float, default=UNCERTAIN_BELOW, help=THRESHOLD_HELP)
    p.add_argument("--save-preprocessed", metavar="DIR", help="write the 28x28 images the model saw (<input name>.png, -2 on a clash)")
    p.add_argument("--explain", metavar="DIR",
                   help="write each preprocessing step of every image side by side (<input name>-steps.png): why it reads as it does")
    p.add_argument("--engine", choices=ENGINES, default="auto", help=ENGINE_HELP)
    p.add_argument("--rows", metavar="MODEL", help="the row reader: a run of `digitrec train --model rows` or its .onnx file "
                                                  "(default: the bundled one)")
    p.add_argument("--detector", metavar="MODEL", help="the digit detector: a run of `digitrec train --model detector` or its "
                                                      ".onnx file (default: the bundled one)")
    p.set_defaults(run=_predict)


def _add_explain(commands: argparse._SubParsersAction) -> None:
    w = commands.add_parser("explain", help="what a model looks at: each convolution's feature maps and the pixels behind its answer",
                            usage="digitrec explain [-h] [--out DIR] [MODEL] IMAGE [IMAGE ...]")
    w.add_argument("inputs", nargs="+", metavar="[MODEL] IMAGE",
                   help="a run directory or checkpoint (default: the bundled model), then image files or folders of them")
    w.add_argument("--out", default="reports/explain", help="folder for the PNG files and explain.html (default: reports/explain)")
    w.set_defaults(run=_explain)


def _add_submit(commands: argparse._SubParsersAction) -> None:
    k = commands.add_parser("submit", help="a Kaggle Digit Recognizer submission for test.csv")
    k.add_argument("model", nargs="?", help="run directory, checkpoint or exported .onnx file (default: the bundled model)")
    k.add_argument("--test", required=True, help="the competition's test.csv (pixel0..pixel783)")
    k.add_argument("-o", "--out", default="submission.csv", help="where to write ImageId,Label (default submission.csv)")
    k.add_argument("--engine", choices=ENGINES, default="auto", help=ENGINE_HELP)
    k.set_defaults(run=_submit)


def _add_serve(commands: argparse._SubParsersAction) -> None:
    v = commands.add_parser("serve", help="serve the draw-a-digit page and the REST API")
    v.add_argument("model", nargs="?", help="run directory, checkpoint or exported .onnx file (default: the bundled model)")
    v.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    v.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    v.add_argument("--threshold", type=float, default=UNCERTAIN_BELOW, help=THRESHOLD_HELP)
    v.add_argument("--max-body", type=int, metavar="BYTES", help="largest request body (default 5 MB; more: 413)")
    v.add_argument("--max-pixels", type=int, metavar="PIXELS",
                   help="largest image in pixels, checked before decoding (default 40 million; more: 413)")
    v.add_argument("--max-batch", type=int, metavar="N",
                   help="most images (or JSON digits) in one /api/predict/batch request (default 64; more: 413)")
    v.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="time a client has to send its request body (default 10 s; slower: 408)")
    v.add_argument("--workers", type=int, metavar="N",
                   help="processes reading images, each with its own copy of the model (default: one per core)")
    v.add_argument("--max-connections", type=int, default=1000, metavar="N",
                   help="connections served at once; more are answered 503 (default 1000)")
    v.set_defaults(run=_serve)


def _add_experiment(commands: argparse._SubParsersAction) -> None:
    r = commands.add_parser("experiment", help="train the runs an experiment file lists (once each) and compare them in one report")
    r.add_argument("file", metavar="FILE.toml", help="the experiment: [[run]] and [[grid]] tables (see experiments/ for examples)")
    r.add_argument("--out", help="folder for its run directories (default: runs/experiments/NAME)")
    r.add_argument("--report", help="folder for its report (default: reports/NAME)")
    r.add_argument("--dry-run", action="store_true", help="list what would be trained, resumed or kept, and the time it would take")
    r.add_argument("--force", action="store_true", help="train again the runs whose folders hold a different configuration")
    r.add_argument("--device", default="auto", help=DEVICE_HELP)
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.set_defaults(run=_experiment)


def _add_export(commands: argparse._SubParsersAction) -> None:
    x = commands.add_parser("export", help="export a model to ONNX")
    x.add_argument("model", help="run directory or checkpoint")
    x.add_argument("--onnx", metavar="OUT.onnx", help="output file (default: RUN_DIR/final.onnx or beside the checkpoint)")
    x.set_defaults(run=_export)


def _add_compare(commands: argparse._SubParsersAction) -> None:
    c = commands.add_parser("compare", help="one report comparing several runs")
    c.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories, ensemble directories, checkpoints or .onnx files")
    c.add_argument("--out", default="reports/compare", help="report folder (default: reports/compare)")
    c.set_defaults(run=_compare)


def _add_data(commands: argparse._SubParsersAction) -> None:
    d = commands.add_parser("data", help="inspect data sets")
    data_commands = d.add_subparsers(dest="data_command", required=True)
    s = data_commands.add_parser("stats", help="counts per class, pixel statistics, class histogram and sample grid")
    s.add_argument("--data", default="mnist", help=DATA_HELP)
    s.add_argument("--part", default="train", choices=["train", "test"], help="which part, where a source has both (default: train)")
    s.add_argument("--data-dir", help=DATA_DIR_HELP)
    s.add_argument("--out", help="folder for the plots (default: reports/data-NAME)")
    s.set_defaults(run=_data_stats)


def _resume_command(run_dir: str, processes: int) -> str:
    """The command that continues a stopped run: as it was started, alone or under torchrun with as many processes."""
    resume = f"-m digitrec train --resume {shlex.quote(run_dir)}"
    if processes == 1:
        return f"digitrec train --resume {shlex.quote(run_dir)}"
    per_machine = int(os.environ.get("LOCAL_WORLD_SIZE", processes))
    if per_machine == processes:
        return f"torchrun --nproc_per_node={processes} {resume}"
    nodes = processes // per_machine
    return f"torchrun --nnodes={nodes} --nproc_per_node={per_machine} --rdzv-endpoint=HOST:PORT {resume} (on every machine)"


def main(argv: Sequence[str] | None = None) -> int:
    code = _main(argv)
    if _IN_A_GROUP:
        # Everything is written and the group left, but Gloo's threads can still abort a process as the interpreter
        # tears down ("terminate called without an active exception", SIGABRT: 2 of ~16 full test runs, even after a
        # barrier before leaving). A torchrun worker has nothing left to do: it ends here, with its own exit code.
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(ValueError, OSError):  # closed after a broken pipe
                stream.flush()
        os._exit(code)
    return code


def _main(argv: Sequence[str] | None) -> int:
    # Python's collections at exit walk every object PyTorch made: about 1 s of each command's time on two cores
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except DigitrecError as e:
        flag = args.flags.get(e.source)
        print(f"digitrec: error: {DigitrecError(e.reason, flag, e.place) if flag else e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except TrainingInterrupted as e:  # everything is saved: say how to go on, once for a group
        if e.leader:
            again = (f"continue with: {_resume_command(e.run_dir, e.processes)}" if args.command == "train"
                     else f"the same `digitrec {args.command}` command continues where it stopped")
            print(f"digitrec: interrupted: {e}; {again}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        again = ("the same `digitrec experiment` command continues where it stopped" if args.command == "experiment"
                 else "a training run continues with `digitrec train --resume RUN_DIR`")
        print(f"digitrec: interrupted; {again}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
