"""Evaluation reports: a model on labelled digits -> metrics JSON, PNG figures, Markdown and HTML.

The HTML embeds its figures, so the one file can be mailed or attached to a course submission.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digitrec import data
from digitrec.data import atomic_write
from digitrec.errors import DigitrecError
from digitrec.inference import open_engine
from digitrec.metrics import Evaluation, read_history

MISTAKES_SHOWN = 60


@dataclass
class Report:
    metrics: dict[str, Any]
    markdown: Path | None  # None when only the metrics were asked for
    html: Path | None


def default_report_dir(model_path: str | Path) -> Path:
    """``RUN_DIR/report`` for a run directory, ``<checkpoint stem>-report`` beside a file."""
    path = Path(model_path)
    return path / "report" if path.is_dir() else path.with_name(f"{path.stem}-report")


def evaluate_model(model_path: str | Path, data_spec: str = "mnist", data_dir: str | Path | None = None,
                   out: str | Path | None = None, device: str = "cpu", write_report: bool = True, engine: str = "auto") -> Report:
    """Evaluate a checkpoint, run directory or ONNX export on the test part of ``data_spec`` and write the report.

    With ``write_report=False`` only the metrics are computed (no files, no matplotlib).
    """
    model = open_engine(model_path, engine, device)
    digits = data.load(data_spec, "test", data_dir)
    if not digits.labelled:
        raise DigitrecError("evaluation needs labelled data (this set has no labels)", digits.name)
    result = Evaluation.from_logits(model.logits(digits.images), digits.labels)
    metrics = {"model": str(model_path), "architecture": model.architecture, "engine": model.kind, "data": digits.name,
               **result.metrics()}
    if not write_report:
        return Report(metrics, None, None)

    from digitrec import plots  # matplotlib is slow to import: only when figures are drawn

    out_dir = Path(out) if out else default_report_dir(model_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "metrics.json", (json.dumps(metrics, indent=2) + "\n").encode())
    figures = {"Confusion matrix": plots.confusion_matrix(metrics["confusion_matrix"], out_dir / "confusion.png")}
    wrong = result.errors[:MISTAKES_SHOWN]
    captions = [f"true {int(result.labels[i])} → {int(result.predicted[i])}\n{float(result.confidence[i]):.0%}" for i in wrong]
    figures[f"Misclassified (the {len(wrong)} most confident mistakes)"] = plots.digit_grid(
        digits.images[wrong], captions, out_dir / "mistakes.png")
    history = _history_of(model.source)
    if history:
        figures["Training curves"] = plots.training_curves(history, out_dir / "curves.png")
    title = f"{model.architecture} on {digits.name}"
    markdown = out_dir / "report.md"
    summary = _summary_rows(metrics, model.meta, model.parameters)
    atomic_write(markdown, _markdown(title, summary, metrics, figures, out_dir).encode())
    page = out_dir / "report.html"
    atomic_write(page, _html(title, summary, metrics, figures).encode())
    return Report(metrics, markdown, page)


def compare_runs(run_dirs: list[str | Path], out: str | Path) -> Path:
    """One report over several runs: a table of their numbers and their curves on one figure."""
    header = ["run", "model", "parameters", "epochs", "best val acc", "last val acc", "train seconds", "test acc"]
    rows, histories = [], {}
    from digitrec import checkpoint, models

    for run_dir in map(Path, run_dirs):
        meta = checkpoint.read_metadata(checkpoint.resolve(run_dir))
        history = _history_of(run_dir / "final.safetensors")
        histories[run_dir.name] = history
        validation = [row["val_accuracy"] for row in history if "val_accuracy" in row]
        tested = run_dir / "report" / "metrics.json"
        test_accuracy = json.loads(tested.read_text())["accuracy"] if tested.is_file() else None
        parameters = models.parameter_count(models.create(meta["architecture"], **meta["arguments"]))
        rows.append([run_dir.name, meta["architecture"], f"{parameters:,}", str(len(history)),
                     f"{max(validation):.2%}" if validation else "-", f"{validation[-1]:.2%}" if validation else "-",
                     f"{sum(row['seconds'] for row in history):.0f}",
                     f"{test_accuracy:.2%}" if test_accuracy is not None else "not evaluated"])
    from digitrec import plots

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    figure = plots.compare_curves(histories, out_dir / "curves.png")
    lines = ["# Comparison", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", "Validation accuracy comes from each run's held-out split; test accuracy from `digitrec evaluate RUN`, where it was run.",
              "", "![curves](curves.png)", ""]
    atomic_write(out_dir / "compare.md", "\n".join(lines).encode())
    page = "\n".join([
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>digitrec comparison</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}",
        "td,th{border:1px solid #ccc;padding:4px 10px}img{max-width:100%}</style></head><body><h1>Comparison</h1>",
        _table(rows, header),
        f"<img alt='curves' src='data:image/png;base64,{base64.b64encode(figure.read_bytes()).decode()}'></body></html>",
    ])
    atomic_write(out_dir / "compare.html", page.encode())
    return out_dir / "compare.html"


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


def _html(title: str, summary: list[tuple[str, str]], metrics: dict[str, Any], figures: dict[str, Path]) -> str:
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>",
        "body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}",
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}",
        "img{max-width:100%}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>", _table(summary),
        "<h2>Per class</h2>", _table(_per_class_rows(metrics), PER_CLASS_HEADER),
    ]
    for caption, path in figures.items():
        encoded = base64.b64encode(path.read_bytes()).decode()
        parts.append(f"<h2>{html.escape(caption)}</h2><img alt='{html.escape(caption)}' src='data:image/png;base64,{encoded}'>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
