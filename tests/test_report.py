"""Comparing models: every kind of model path shows what it records, and what it does not is marked, never 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from digitrec import checkpoint, models, report
from digitrec.errors import DigitrecError
from digitrec.rundir import CONFIG, FINAL, default_report_dir, member_dir, write_history, write_json

MLP = "seed001-mlp1"
MLP_PARAMETERS = 39_760


def _epochs(count: int, seconds: float, validation: list[float] | None = None) -> list[dict]:
    rows, elapsed = [], 0.0
    for epoch in range(1, count + 1):
        elapsed += seconds
        row = {"epoch": epoch, "train_loss": 1.0 / epoch, "train_accuracy": 0.5 + epoch / 100, "seconds": seconds, "elapsed": elapsed}
        if validation:
            row.update(val_loss=1.0 / epoch, val_accuracy=validation[epoch - 1])
        rows.append(row)
    return rows


def _run(path: Path, history: list[dict]) -> Path:
    """A run directory as `digitrec train` leaves it (its config, history and final checkpoint)."""
    path.mkdir(parents=True)
    write_json(path / CONFIG, {"model": MLP, "arguments": {}})
    write_history(path, history)
    checkpoint.save(path / FINAL, models.create(MLP), MLP, {}, epoch=history[-1]["epoch"], metrics=history[-1])
    return path


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """Three epochs of 2 s with validation, evaluated on the test set."""
    run = _run(tmp_path / "run", _epochs(3, 2.0, validation=[0.90, 0.92, 0.91]))
    write_json(default_report_dir(run) / "metrics.json", {"accuracy": 0.97})
    return run


@pytest.fixture
def lone_checkpoint(tmp_path: Path) -> Path:
    """A checkpoint copied out of its run: epoch 5 of 5, 21 s of training in all, no validation split."""
    path = tmp_path / "lone.safetensors"
    metrics = {"train_loss": 0.2, "train_accuracy": 0.95, "seconds": 4.0, "elapsed": 21.0}
    checkpoint.save(path, models.create(MLP), MLP, {}, epoch=5, metrics=metrics, training={"recipe": {"epochs": 5}})
    return path


@pytest.fixture
def onnx_export(tmp_path: Path) -> Path:
    """An export of epoch 7, whose checkpoint recorded its validation accuracy but not the training time, evaluated."""
    from digitrec.export import export_onnx

    source = tmp_path / "source" / "model.safetensors"
    source.parent.mkdir()
    checkpoint.save(source, models.create(MLP), MLP, {}, epoch=7, metrics={"train_accuracy": 0.9, "val_accuracy": 0.9},
                    training={"recipe": {"epochs": 7}})
    path = export_onnx(source, tmp_path / "export.onnx")
    write_json(default_report_dir(path) / "metrics.json", {"accuracy": 0.95})
    return path


@pytest.fixture
def ensemble_dir(tmp_path: Path) -> Path:
    """What `digitrec ensemble --members 2` leaves: two member runs of 4 epochs of 1.5 s, and the combined checkpoint."""
    path = tmp_path / "ens"
    for index in range(2):
        _run(member_dir(path, index), _epochs(4, 1.5))
    specs = [{"architecture": MLP, "arguments": {}}] * 2
    checkpoint.save(path / FINAL, models.Ensemble(specs), "ensemble", {"members": specs}, epoch=4,
                    training={"presets": ["default"], "members": 2, "seed": 0})
    return path


def test_compare_shows_what_each_kind_of_model_records_and_marks_the_rest(tmp_path: Path, run_dir: Path, lone_checkpoint: Path,
                                                                          onnx_export: Path, ensemble_dir: Path):
    page = report.compare_runs([run_dir, lone_checkpoint, onnx_export, ensemble_dir], tmp_path / "cmp")

    table = (tmp_path / "cmp" / "compare.md").read_text()
    # run | model | parameters | epochs | best val acc | last val acc | train seconds | test acc
    assert "| run | seed001-mlp1 | 39,760 | 3 | 92.00% | 91.00% | 6 | 97.00% |" in table
    assert "| lone.safetensors | seed001-mlp1 | 39,760 | 5 | - | - | 21 | not evaluated |" in table
    assert "| export.onnx | seed001-mlp1 | 39,760 | 7 | ? | 90.00% | ? | 95.00% |" in table
    assert "| ens | ensemble | 79,520 | 2 x 4 | - | - | 12 | not evaluated |" in table
    assert "`?`" in table and "`-`" in table  # the marks are explained
    html = page.read_text()
    assert "<td>2 x 4</td>" in html and "not recorded" in html
    assert "data:image/png;base64," in html  # the run and the members have curves


def test_a_run_s_final_checkpoint_and_export_use_its_history(tmp_path: Path, run_dir: Path):
    from digitrec.export import export_onnx

    export_onnx(run_dir)
    report.compare_runs([run_dir / FINAL, run_dir / "final.onnx"], tmp_path / "cmp")

    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| run/final.safetensors | seed001-mlp1 | 39,760 | 3 | 92.00% | 91.00% | 6 | 97.00% |" in table
    assert "| run/final.onnx | seed001-mlp1 | 39,760 | 3 | 92.00% | 91.00% | 6 | 97.00% |" in table


def test_compare_without_any_history_leaves_the_curves_out(tmp_path: Path, lone_checkpoint: Path):
    page = report.compare_runs([lone_checkpoint], tmp_path / "cmp")

    assert "curves" not in (tmp_path / "cmp" / "compare.md").read_text()
    assert "<img" not in page.read_text()


def test_comparing_an_export_needs_no_pytorch(tmp_path: Path, onnx_export: Path):
    code = ("import sys; from digitrec import report; "
            f"report.compare_runs([{str(onnx_export)!r}], {str(tmp_path / 'cmp')!r}); assert 'torch' not in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("name", "expected"), [("garbage.onnx", "not an ONNX model"), ("empty.onnx", "not an ONNX model"),
                                                ("garbage.safetensors", "not a safetensors file")])
def test_a_file_that_is_no_model_is_refused_in_one_line(tmp_path: Path, run_dir: Path, name: str, expected: str):
    garbage = tmp_path / name
    garbage.write_bytes(b"" if name.startswith("empty") else b"these are notes, not a model\n" * 20)

    with pytest.raises(DigitrecError) as refused:
        report.compare_runs([run_dir, garbage], tmp_path / "cmp")

    assert refused.value.source == str(garbage)
    assert expected in refused.value.reason
    assert "\n" not in str(refused.value)
