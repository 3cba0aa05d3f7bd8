"""The layout of a run directory, in one place: its file names, where a new run may go, and its records.

A training run writes ``config.json`` (what it trains, resolved), ``metrics.jsonl`` (one line per
epoch), ``final.safetensors``, ``best.safetensors``, ``state.safetensors`` (what ``--resume``
needs), ``curves.png``, ``final.onnx`` and, once evaluated, ``report/``. An ensemble directory
holds ``ensemble.json``, one run directory per member (``member-N``) and the combined
``final.safetensors`` and ``final.onnx``. Nothing here imports PyTorch.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from digitrec.errors import DigitrecError
from digitrec.files import atomic_write, make_dir

CONFIG = "config.json"
HISTORY = "metrics.jsonl"
FINAL = "final.safetensors"
BEST = "best.safetensors"
STATE = "state.safetensors"
EXPORT = "final.onnx"
CURVES = "curves.png"
REPORT = "report"
ENSEMBLE = "ensemble.json"


def epoch_file(epoch: int) -> str:
    """The checkpoint kept for every epoch with ``keep_epochs``."""
    return f"epoch-{epoch:03d}.safetensors"


def member_dir(ensemble_dir: Path, index: int) -> Path:
    return ensemble_dir / f"member-{index}"


def new_run_dir(name: str, root: Path = Path("runs")) -> Path:
    """A fresh ``root/NAME-YYYYmmdd-HHMMSS`` path (``-2``, ``-3``… when taken)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate, n = root / f"{name}-{stamp}", 1
    while candidate.exists():
        n += 1
        candidate = root / f"{name}-{stamp}-{n}"
    return candidate


def launched_run_dir(name: str, run_id: str, root: Path = Path("runs")) -> Path:
    """``root/NAME-RUNID``: where a run started by torchrun goes without ``--out``, so that a restarted group finds it."""
    return root / f"{name}-{run_id}"


def holds_run(path: Path) -> bool:
    return (path / CONFIG).is_file()


def holds_ensemble(path: Path) -> bool:
    return (path / ENSEMBLE).is_file()


def claim(path: Path, kind: str = "run") -> Path:
    """Create ``path`` for a new run (``kind`` "run" or "ensemble"), refusing anywhere that holds work already.

    Only a new or empty folder becomes a run: a run or an ensemble there is continued with
    ``--resume`` (``digitrec ensemble`` again), and any other content is never overwritten.
    """
    if path.is_dir():
        if holds_run(path):
            raise DigitrecError("already holds a training run; continue it with `digitrec train --resume` or choose another --out",
                                str(path))
        if holds_ensemble(path):
            raise DigitrecError("already holds an ensemble; continue it with `digitrec ensemble --out` or choose another --out",
                                str(path))
        if any(path.iterdir()):
            raise DigitrecError(f"is not empty; a new {kind} needs a new or empty folder (nothing here is overwritten)", str(path))
    return make_dir(path)


def write_json(path: Path, value: Any) -> None:
    atomic_write(path, (json.dumps(value, indent=2) + "\n").encode())


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise DigitrecError(f"not {what} (no {path.name} in it)", str(path.parent)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DigitrecError(f"unreadable {path.name} ({e})", str(path.parent)) from None
    if not isinstance(value, dict):
        raise DigitrecError(f"{path.name} does not hold a JSON object", str(path.parent))
    return value


def read_config(run_dir: Path) -> dict[str, Any]:
    """A run directory's resolved configuration."""
    if not run_dir.is_dir():
        raise DigitrecError("no such run directory" if not run_dir.exists() else "is a file, not a run directory", str(run_dir))
    return read_json(run_dir / CONFIG, "a run directory")


def write_history(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write(run_dir / HISTORY, "".join(json.dumps(row) + "\n" for row in rows).encode())


def read_history(run_dir: str | Path) -> list[dict[str, Any]]:
    """A run directory's per-epoch metrics, oldest first; [] if it has none."""
    path = Path(run_dir) / HISTORY
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_dir_of(model_path: Path) -> Path | None:
    """The run (or ensemble) directory a model path belongs to: itself, or the folder of its final checkpoint or export."""
    if model_path.is_dir():
        return model_path
    if model_path.name in (FINAL, BEST, EXPORT) and (holds_run(model_path.parent) or holds_ensemble(model_path.parent)):
        return model_path.parent
    return None


def default_report_dir(model_path: str | Path) -> Path:
    """``RUN_DIR/report`` for a run directory, ``<file stem>-report`` beside a file."""
    path = Path(model_path)
    return path / REPORT if path.is_dir() else path.with_name(f"{path.stem}-report")


def default_export_path(model_path: str | Path) -> Path:
    """``RUN_DIR/final.onnx`` for a run directory, ``<checkpoint stem>.onnx`` beside a file."""
    path = Path(model_path)
    return path / EXPORT if path.is_dir() else path.with_suffix(".onnx")
