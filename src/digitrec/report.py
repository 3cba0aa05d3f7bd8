"""Evaluation reports: a model on labelled digits -> metrics JSON, PNG figures, Markdown and HTML.

The HTML embeds its figures, so the one file can be mailed or attached to a course submission.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from digitrec import data
from digitrec.errors import DigitrecError
from digitrec.files import atomic_write, check_writable_dir
from digitrec.inference import open_engine, read_onnx_metadata
from digitrec.metrics import Evaluation
from digitrec.mnist_format import FIELD
from digitrec.rundir import EXPORT, FINAL, default_report_dir, member_dir, read_history, read_json, run_dir_of

if TYPE_CHECKING:
    from digitrec.explain import Explanation

MISTAKES_SHOWN = 60


@dataclass
class Report:
    metrics: dict[str, Any]
    markdown: Path | None  # None when only the metrics were asked for
    html: Path | None


def evaluate_model(model_path: str | Path | None, data_spec: str = "mnist", data_dir: str | Path | None = None,
                   out: str | Path | None = None, device: str = "cpu", write_report: bool = True, engine: str = "auto") -> Report:
    """Evaluate a checkpoint, run directory or ONNX export (None: the bundled model) on the test part of ``data_spec``.

    With ``write_report=False`` only the metrics are computed (no files, no matplotlib).
    """
    model = open_engine(model_path, engine, device)
    default_out = default_report_dir(model_path) if model_path is not None else Path("reports/bundled-model")
    out_dir = check_writable_dir(Path(out) if out else default_out) if write_report else None
    digits = data.load(data_spec, "test", data_dir)
    if not digits.labelled:
        raise DigitrecError("evaluation needs labelled data (this set has no labels)", digits.name)
    result = Evaluation.from_logits(model.logits(digits.images), digits.labels)
    metrics = {"model": str(model_path or model.source), "architecture": model.architecture, "engine": model.kind, "data": digits.name,
               **result.metrics()}
    if out_dir is None:
        return Report(metrics, None, None)

    from digitrec import plots  # matplotlib is slow to import: only when figures are drawn

    atomic_write(out_dir / "metrics.json", (json.dumps(metrics, indent=2) + "\n").encode())
    figures = {"Confusion matrix": plots.confusion_matrix(metrics["confusion_matrix"], out_dir / "confusion.png")}
    wrong = result.errors[:MISTAKES_SHOWN]
    captions = [f"true {int(result.labels[i])} → {int(result.predicted[i])}\n{float(result.confidence[i]):.0%}" for i in wrong]
    figures[f"Misclassified (the {len(wrong)} most confident mistakes)"] = plots.digit_grid(
        digits.images[wrong], captions, out_dir / "mistakes.png")
    history = _history_of(model.source)
    if history:
        figures["Training curves"] = plots.training_curves(history, out_dir / "curves.png")
    module = _torch_module(model)
    if module is not None:
        from digitrec import explain  # PyTorch and Captum: only for a model that has a PyTorch module
  # a few right answers and the most confident mistakes, as the model sees them
        right = np.flatnonzero(result.predicted == result.labels)[:EXPLAINED_RIGHT]
        chosen = np.concatenate([right, result.errors[:EXPLAINED_WRONG]])
        names = [f"test digit {i}, true {int(result.labels[i])}" for i in chosen]
        figures.update(_explanation_figures(explain.explain_digits(module, digits.images[chosen], model.meta.get("temperature") or 1.0),
                                            names, out_dir, maps_for=(0, len(right)) if len(chosen) > len(right) else (0,)))
    title = f"{model.architecture} on {digits.name}"
    markdown = out_dir / "report.md"
    summary = _summary_rows(metrics, model.meta, model.parameters)
    atomic_write(markdown, _markdown(title, summary, metrics, figures, out_dir).encode())
    page = out_dir / "report.html"
    atomic_write(page, _html(title, summary, metrics, figures).encode())
    return Report(metrics, markdown, page)


def _torch_module(model: Any) -> Any:
    """The PyTorch module behind an engine, or None where there is none (an ONNX file without its checkpoint)."""
    from digitrec.inference import TorchEngine
    from digitrec.predict import Predictor

    if isinstance(model, TorchEngine):
        return model.model
    try:
        return Predictor(model).model
    except DigitrecError:
        return None


def _explanation_figures(explanations: list[Explanation], names: list[str], out_dir: Path,
                         maps_for: tuple[int, ...]) -> dict[str, Path]:
    """Attributions of every digit in one figure, and the feature maps of each layer for the digits ``maps_for`` indexes."""
    from digitrec import plots

    captions = [f"{name}: read {e.predicted} ({e.probabilities.max():.0%})" for e, name in zip(explanations, names, strict=True)]
    figures = {"What the model looks at: the pixels that drove each answer (integrated gradients)": plots.attributions(
        np.stack([e.digit for e in explanations]), np.stack([e.attribution for e in explanations]), captions,
        out_dir / "attributions.png")}
    for index in maps_for:
        for number, (layer, maps) in enumerate(explanations[index].layers, 1):
            caption = f"{captions[index]}: layer {layer}, {len(maps)} feature maps of {maps.shape[1]}x{maps.shape[2]}"
            figures[caption] = plots.feature_maps(maps, out_dir / f"maps-{index + 1}-layer-{number}.png")
    return figures


def explanation_report(model_path: str | Path | None, inputs: list[Any], out: str | Path) -> Path:
    """``digitrec explain``: each image read as ``predict`` reads it, then what the model made of it; returns the HTML page.

    Writes ``explain.md`` and ``explain.html`` with the attributions of all images and every
    convolution layer's feature maps for each, as PNG files beside them.
    """
    from digitrec import explain, predict

    reader = predict.load(model_path, engine="torch")
    readings = reader.read(inputs)
    out_dir = check_writable_dir(out)
    digits = np.stack([reading.seen[0] if len(reading.seen) else np.zeros((FIELD, FIELD), np.uint8) for reading in readings])
    names = [Path(reading.source).name for reading in readings]
    figures = _explanation_figures(explain.explain_digits(reader.model, digits, reader.temperature), names, out_dir,
                                   maps_for=tuple(range(len(readings))))
    title = f"What {reader.meta.get('architecture', 'the model')} looks at"
    lines = [f"# {title}", "", EXPLAIN_NOTE]
    for caption, path in figures.items():
        lines += ["", f"## {caption}", "", f"![{caption}]({path.name})"]
    atomic_write(out_dir / "explain.md", ("\n".join(lines) + "\n").encode())
    page = _page(title, [f"<p>{html.escape(EXPLAIN_NOTE)}</p>", *(_figure(caption, path) for caption, path in figures.items())])
    atomic_write(out_dir / "explain.html", page.encode())
    return out_dir / "explain.html"


EXPLAINED_RIGHT, EXPLAINED_WRONG = 3, 3  # digits an evaluation report explains: the first read right, the most confident mistakes
EXPLAIN_NOTE = ("Attribution: integrated gradients (Captum) from a black image to the digit, for the class the model chose; red pixels "
                "raised that class's score, blue ones lowered it. Feature maps: each convolution's output after its activation, each "
                "map in its own range, brighter where it responds more.")

COMPARE_HEADER = ["run", "model", "parameters", "epochs", "best val acc", "last val acc", "train seconds", "test acc"]
UNKNOWN, NOT_APPLICABLE = "?", "-"
COMPARE_NOTES = [
    f"`{UNKNOWN}`: not recorded by what was given (a lone checkpoint or export keeps only its last epoch's numbers, "
    "not its run's history).",
    f"`{NOT_APPLICABLE}`: does not apply (trained without a validation split).",
    "An ensemble's epochs are members x epochs each, its train seconds its members' total, and its validation accuracy "
    "its members' (best of any; mean of their last), not the combined model's.",
    "Validation accuracy comes from each run's held-out split; test accuracy from `digitrec evaluate`, where it was run.",
]


def compare_runs(run_dirs: list[str | Path], out: str | Path) -> Path:
    """One report over several run directories, checkpoints, ONNX exports or ensembles: their numbers and their curves.

    What a model path does not record (a lone file has no history) is marked, never shown as 0.
    """
    rows, histories = [], {}
    for path in map(Path, run_dirs):
        row, curves = _compared(path)
        rows.append(row)
        histories.update({f"{row[0]} {part}".strip(): history for part, history in curves.items()})
    out_dir = check_writable_dir(out)
    figure = None
    if histories:
        from digitrec import plots  # matplotlib is slow to import: only when there are curves to draw

        figure = plots.compare_curves(histories, out_dir / "curves.png")
    lines = ["# Comparison", "", "| " + " | ".join(COMPARE_HEADER) + " |", "|" + "---|" * len(COMPARE_HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", *(f"{note}  " for note in COMPARE_NOTES), *(["", "![curves](curves.png)"] if figure else []), ""]
    atomic_write(out_dir / "compare.md", "\n".join(lines).encode())
    notes = [f"<p>{html.escape(note.replace('`', ''))}</p>" for note in COMPARE_NOTES]
    page = _page("Comparison", [_table(rows, COMPARE_HEADER), *notes, *([_figure("Curves", figure)] if figure else [])], 1100)
    atomic_write(out_dir / "compare.html", page.encode())
    return out_dir / "compare.html"


@dataclass
class ExperimentRun:
    """One seed of one named run of an experiment, evaluated, and the published figure it stands beside."""

    name: str
    run_dir: Path
    published: float | None = None  # in %
    published_on: str = "test"  # or "validation": compared with the last epoch's validation accuracy
    source: str = ""


EXPERIMENT_HEADER = ["run", "model", "parameters", "epochs", "train s", "best val acc", "test acc", "precision", "recall", "F1",
                     "errors", "published", "difference"]


def experiment_report(title: str, description: str, notes: str, runs: list[ExperimentRun], out: str | Path,
                      test_name: str = "the test set") -> Path:
    """An experiment's report: one row per named run (mean ± sd over its seeds), curves, accuracy per digit and against time.

    ``runs`` holds every seed of every named run, each evaluated on ``test_name``. The best mean test
    accuracy is marked. Writes ``experiment.md`` with its figures and a self-contained ``experiment.html``.
    """
    from digitrec import plots
    from digitrec.checkpoint import read_metadata

    out_dir = check_writable_dir(out)
    by_name: dict[str, list[tuple[Path, dict[str, Any]]]] = {}
    published: dict[str, ExperimentRun] = {}
    for run in runs:
        metrics = read_json(default_report_dir(run.run_dir) / "metrics.json", "an evaluation report")
        by_name.setdefault(run.name, []).append((run.run_dir, metrics))
        published[run.name] = run
    summaries = {name: _run_summary(seeds, read_metadata(seeds[0][0] / FINAL)) for name, seeds in by_name.items()}
    best = max(summaries, key=lambda name: summaries[name]["accuracy"][0])
    rows = []
    for name, summary in summaries.items():
        mean, sd, count = summary["accuracy"]
        figure, on = published[name].published, published[name].published_on
        ours = mean if on == "test" else summary["last_val"]
        rows.append([f"{name} (best)" if name == best else name, summary["model"], f"{summary['parameters']:,}", summary["epochs"],
                     f"{summary['seconds']:.0f}", summary["best_val"], _mean_sd(mean, sd, count), *summary["macro"],
                     f"{summary['errors']:.0f}" if count == 1 else f"{summary['errors']:.1f}",
                     (f"{figure:.2f} %" + (" (val)" if on == "validation" else "")) if figure is not None else NOT_APPLICABLE,
                     f"{ours * 100 - figure:+.2f}" if figure is not None and ours is not None else NOT_APPLICABLE])
    sources = [f"{name}: {run.source}" for name, run in published.items() if run.published is not None and run.source]
    histories = {name: read_history(seeds[0][0]) for name, seeds in by_name.items()}
    figures = {
        "Training curves (the first seed of each run)": plots.compare_curves({k: v for k, v in histories.items() if v},
                                                                              out_dir / "curves.png"),
        "Accuracy per digit (mean over seeds)": plots.per_class_accuracy(
            {name: s["per_class"] for name, s in summaries.items()}, out_dir / "per-class.png"),
        "Test accuracy against training time (mean over seeds)": plots.accuracy_against_time(
            {name: (s["seconds"], s["accuracy"][0]) for name, s in summaries.items()}, out_dir / "accuracy-time.png"),
    }
    legend = [f"Test accuracy is on {test_name}, as mean ± sd over seeds where there are several (n = seeds); it chose nothing.",
              "train s: training time per run on the machine that ran it; best val acc: the best epoch on the held-out split "
              f"(`{NOT_APPLICABLE}` without one); precision, recall and F1 are macro averages; "
              "difference: ours minus published, in points: our test accuracy, or for a published validation figure (val) "
              "our last epoch's validation accuracy (mean over seeds)."]
    lines = [f"# {title}", "", *([description, ""] if description else []), "| " + " | ".join(EXPERIMENT_HEADER) + " |",
             "|" + "---|" * len(EXPERIMENT_HEADER), *("| " + " | ".join(row) + " |" for row in rows),
             "", *(f"{line}  " for line in legend), *(["", "Published figures: " + "; ".join(sources) + "."] if sources else []),
             *(["", notes] if notes else [])]
    for caption, path in figures.items():
        lines += ["", f"## {caption}", "", f"![{caption}]({path.name})"]
    atomic_write(out_dir / "experiment.md", ("\n".join(lines) + "\n").encode())
    parts = [*([f"<p>{html.escape(description)}</p>"] if description else []), _table(rows, EXPERIMENT_HEADER),
             *(f"<p>{html.escape(line.replace('`', ''))}</p>" for line in legend),
             *([f"<p>Published figures: {html.escape('; '.join(sources))}.</p>"] if sources else []),
             *([f"<p>{html.escape(notes)}</p>"] if notes else []), *(_figure(caption, path) for caption, path in figures.items())]
    atomic_write(out_dir / "experiment.html", _page(title, parts, 1200).encode())
    return out_dir / "experiment.html"


def _run_summary(seeds: list[tuple[Path, dict[str, Any]]], meta: dict[str, Any]) -> dict[str, Any]:
    """One named run over its seeds: means (and the test accuracy's sd) of what the table and figures show."""
    import statistics

    accuracies = [metrics["accuracy"] for _, metrics in seeds]
    histories = [read_history(run_dir) for run_dir, _ in seeds]
    best_vals = [max(row["val_accuracy"] for row in h) for h in histories if h and "val_accuracy" in h[0]]
    last_vals = [h[-1]["val_accuracy"] for h in histories if h and "val_accuracy" in h[-1]]
    epochs = sorted({len(h) for h in histories})
    return {
        "model": meta["architecture"],
        "parameters": _parameter_count(meta) or 0,
        "epochs": "/".join(map(str, epochs)),
        "seconds": statistics.mean(h[-1]["elapsed"] if h else 0.0 for h in histories),
        "best_val": f"{statistics.mean(best_vals):.2%}" if best_vals else NOT_APPLICABLE,
        "last_val": statistics.mean(last_vals) if last_vals else None,
        "accuracy": (statistics.mean(accuracies), statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0, len(accuracies)),
        "macro": [f"{statistics.mean(m[key] for _, m in seeds):.4f}" for key in ("precision", "recall", "f1")],
        "errors": statistics.mean(m["errors"] for _, m in seeds),
        "per_class": [statistics.mean(m["per_class"][str(d)]["accuracy"] for _, m in seeds) for d in range(10)],
    }


def _mean_sd(mean: float, sd: float, count: int) -> str:
    return f"{mean:.2%}" if count == 1 else f"{mean * 100:.2f} ± {sd * 100:.2f} % (n = {count})"


def _compared(path: Path) -> tuple[list[str], dict[str, list[dict[str, Any]]]]:
    """A model path's row of the comparison table, and its training curves by part ("" or "member-N")."""
    meta = _model_metadata(path)
    home = _home(path, meta)
    if meta["architecture"] == "ensemble":
        count = len(meta["arguments"].get("members", []))
        curves = {f"member-{i}": _history_of(member_dir(home, i) / FINAL) if home else [] for i in range(count)}
        lengths = {len(history) or UNKNOWN for history in curves.values()}
        epochs = f"{count} x {lengths.pop()}" if len(lengths) == 1 else " + ".join(str(len(h) or UNKNOWN) for h in curves.values())
    else:
        curves = {"": _history_of(home / FINAL) if home else []}
        epochs = str(len(curves[""]) or meta.get("epoch", UNKNOWN))
    known = list(curves.values())
    if all(known):
        seconds: float | None = sum(row["seconds"] for history in known for row in history)
        best, last = _validation(known)
    else:  # no history (or only some members'): the checkpoint's own last epoch is all there is
        metrics = meta.get("metrics") if meta["architecture"] != "ensemble" else None
        seconds = metrics.get("elapsed") if metrics else None
        if metrics is None:
            best, last = UNKNOWN, UNKNOWN
        elif "val_accuracy" in metrics:
            best, last = UNKNOWN, f"{metrics['val_accuracy']:.2%}"  # the best may have been an earlier epoch
        else:
            best, last = NOT_APPLICABLE, NOT_APPLICABLE
    parameters = _parameter_count(meta)
    test_accuracy = _test_accuracy(path, home)
    label = f"{home.name}/{path.name}" if home and home != path else path.name
    row = [label, meta["architecture"], f"{parameters:,}" if parameters is not None else UNKNOWN, epochs, best, last,
           f"{seconds:.0f}" if seconds is not None else UNKNOWN, f"{test_accuracy:.2%}" if test_accuracy is not None else "not evaluated"]
    return row, {part: history for part, history in curves.items() if history}


def _model_metadata(path: Path) -> dict[str, Any]:
    if path.suffix == ".onnx":
        return read_onnx_metadata(path)
    from digitrec import checkpoint  # PyTorch loads here: never for an .onnx file

    return checkpoint.read_metadata(checkpoint.resolve(path))


def _home(path: Path, meta: dict[str, Any]) -> Path | None:
    """The run or ensemble directory whose records describe this model, if any."""
    if path.is_dir():
        return path
    if path.name not in (FINAL, EXPORT):
        return None  # best.safetensors or an epoch's checkpoint: the run's history goes past it
    if meta["architecture"] == "ensemble":
        return path.parent  # older ensembles have no ensemble.json for run_dir_of to see; their members tell
    return run_dir_of(path)


def _validation(histories: list[list[dict[str, Any]]]) -> tuple[str, str]:
    """Best and last validation accuracy over one run's history, or over an ensemble's members (best of any, mean of last)."""
    lasts = [values[-1] for values in ([row["val_accuracy"] for row in h if "val_accuracy" in row] for h in histories) if values]
    if not lasts:
        return NOT_APPLICABLE, NOT_APPLICABLE
    best = max(row["val_accuracy"] for history in histories for row in history if "val_accuracy" in row)
    return f"{best:.2%}", f"{sum(lasts) / len(lasts):.2%}"


def _parameter_count(meta: dict[str, Any]) -> int | None:
    if isinstance(meta.get("parameters"), int):
        return meta["parameters"]
    from digitrec import models  # only checkpoints older than the recorded count need the model built

    try:
        return models.parameter_count(models.create(meta["architecture"], **meta["arguments"]))
    except (KeyError, TypeError):  # an architecture this version no longer has
        return None


def _test_accuracy(path: Path, home: Path | None) -> float | None:
    """From `digitrec evaluate` of this path or, for a run's final model, of its run directory."""
    for folder in (default_report_dir(path), *([default_report_dir(home)] if home and home != path else [])):
        if (folder / "metrics.json").is_file():
            return read_json(folder / "metrics.json", "an evaluation report").get("accuracy")
    return None


def _history_of(checkpoint_path: Path) -> list[dict[str, Any]]:
    """The training history beside a checkpoint; a report goes without curves rather than fail on it."""
    try:
        return read_history(checkpoint_path.parent)
    except (OSError, json.JSONDecodeError):
        return []


def _summary_rows(metrics: dict[str, Any], meta: dict[str, Any], parameters: int | None) -> list[tuple[str, str]]:
    training = meta.get("training", {})
    recipe = training.get("recipe", {})
    rows = [
        ("accuracy", f"{metrics['accuracy']:.2%} ({metrics['errors']} errors in {metrics['count']})"),
        ("loss", f"{metrics['loss']:.4f}"),
        ("precision / recall / F1 (macro)", f"{metrics['precision']:.4f} / {metrics['recall']:.4f} / {metrics['f1']:.4f}"),
        ("architecture", meta["architecture"]),
        ("parameters", f"{parameters:,}" if parameters is not None else "unknown"),
    ]
    if meta.get("reported"):
        rows.append(("its report claimed", meta["reported"]))
    if recipe:
        rows.append(("recipe", f"{recipe['optimizer']} lr {recipe['lr']}, batch {recipe['batch_size']}, "
                               f"{meta.get('epoch', '?')}/{recipe['epochs']} epochs, {recipe['schedule']} schedule"))
    if "data" in meta:
        rows.append(("trained on", f"{meta['data']['name']} ({meta['data']['count']} images, sha256 {meta['data']['checksum'][:12]}…)"))
    versions = meta.get("versions", {})
    rows.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    return rows


def _per_class_rows(metrics: dict[str, Any]) -> list[list[str]]:
    return [[digit, f"{m['precision']:.4f}", f"{m['recall']:.4f}", f"{m['f1']:.4f}", f"{m['accuracy']:.2%}", str(m["support"])]
            for digit, m in metrics["per_class"].items()]


PER_CLASS_HEADER = ["digit", "precision", "recall", "F1", "accuracy", "support"]


def _markdown(title: str, summary: list[tuple[str, str]], metrics: dict[str, Any], figures: dict[str, Path], out_dir: Path) -> str:
    lines = [f"# {title}", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in summary]
    lines += ["", "## Per class", "", "| " + " | ".join(PER_CLASS_HEADER) + " |", "|" + "---|" * len(PER_CLASS_HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in _per_class_rows(metrics)]
    for caption, path in figures.items():
        lines += ["", f"## {caption}", "", f"![{caption}]({path.relative_to(out_dir)})"]
    return "\n".join(lines) + "\n"


def _table(rows: list[list[str]] | list[tuple[str, str]], header: list[str] | None = None) -> str:
    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _page(title: str, parts: list[str], width: int = 960) -> str:
    """A self-contained HTML page: the title, then ``parts`` (HTML) in order."""
    head = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>", f"<title>{html.escape(title)}</title><style>",
            f"body{{font-family:system-ui,sans-serif;max-width:{width}px;margin:2em auto;color:#222}}",
            "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}",
            "img{max-width:100%}</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
    return "\n".join([*head, *parts, "</body></html>"]) + "\n"


def _figure(caption: str, path: Path) -> str:
    encoded = base64.b64encode(path.read_bytes()).decode()
    return f"<h2>{html.escape(caption)}</h2><img alt='{html.escape(caption)}' src='data:image/png;base64,{encoded}'>"


def _html(title: str, summary: list[tuple[str, str]], metrics: dict[str, Any], figures: dict[str, Path]) -> str:
    parts = [_table(summary), "<h2>Per class</h2>", _table(_per_class_rows(metrics), PER_CLASS_HEADER)]
    return _page(title, parts + [_figure(caption, path) for caption, path in figures.items()])
