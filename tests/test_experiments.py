"""Experiments: a TOML file of runs, each trained once, resumed when interrupted, compared in one report."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli

from digitrec import checkpoint, experiments, training
from digitrec.errors import DigitrecError


def write(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def small_study(tmp_path: Path, npz: Path, epochs: int = 2) -> Path:
    data = f'"npz:{npz}"'
    return write(tmp_path, f"""
title = "Two small CNNs"
data = {data}
test = {data}
seeds = [0, 1]
[overrides]
epochs = {epochs}
batch_size = 64
lr = 0.003
optimizer = "adam"
validation = 0.2
[[run]]
name = "cnn1"
model = "seed001-cnn1"
published = 98.5
source = "seed 001, table 3"
[[grid]]
name = "cnn1-batch{{batch_size}}"
model = "seed001-cnn1"
seeds = [0]
overrides = {{ batch_size = [32] }}
""")


@pytest.mark.parametrize(("text", "named"), [
    ("titel = 'x'\n[[run]]\nname = 'a'\nmodel = 'fast'", "'titel'"),
    ("[[run]]\nname = 'a'\nmodel = 'fast'\nlr = 0.1", "'run[0].lr'"),
    ("[[run]]\nmodel = 'fast'", "'run[0].name' is missing"),
    ("seeds = 3\n[[run]]\nname = 'a'\nmodel = 'fast'", "'seeds'"),
    ("[[run]]\nname = 'a'\nmodel = 'fast'\nseeds = [-1]", "'run[0].seeds'"),
    ("[[run]]\nname = 'a/b'", "'run[0].name'"),
    ("[[run]]\nname = 'a'\nmodel = 'fast'\n[[run]]\nname = 'a'\nmodel = 'fast'", "two runs are named 'a'"),
    ("[[run]]\nname = 'a'\nmodel = 'nosuch'", "unknown model 'nosuch'"),
    ("[[run]]\nname = 'a'\nmodel = 'fast'\noverrides = { lrr = 0.1 }", "unknown recipe field 'lrr'"),
    ("[[run]]\nname = 'a'\nmodel = 'fast'\noverrides = { lr = -1.0 }", "lr: must be"),
    ("[[run]]\nname = 'a'\nmodel = 'fast'\npublished = 'high'", "'run[0].published'"),
    ("[[grid]]\nname = '{lr}-{momentum}'\noverrides = { lr = [0.1] }", "'grid[0].name'"),
    ("[[grid]]\nmodel = []", "'grid[0].model' is an empty list"),
    ("[[run]]\nname = 'a'", "'run[0].model' is missing: say what 'a' trains"),
    ("[[run]]\nname = 'a'\nmodel = 'fast'\noverrides = { epochs = true }", "epochs: must be a whole number, got true, a boolean"),
    ("data = 'nosuch:x'\n[[run]]\nname = 'a'\nmodel = 'fast'", "'data' = 'nosuch:x': unknown data source; use mnist"),
    ("[[run]]\nname = 'a'\nmodel = 'fast'\ndata = 'npz:missing.npz'", "'run[0].data' = 'npz:missing.npz': no such file or folder"),
    ("test = 'kaggle:missing.csv'\n[[run]]\nname = 'a'\nmodel = 'fast'", "'test' = 'kaggle:missing.csv': no such file"),
    ("[[run]]\nname = 'a'\nmodel = 'fast'\nwatch = 'mnst'", "'run[0].watch' = 'mnst': unknown data source"),
    ("[[grid]]\nname = 'g{lr}'\noverrides = { lr = [0.1] }", "'grid[0].model' is missing"),
    ("title = ", "not valid TOML"),
    ("title = 'no runs'", "no runs"),
])
def test_a_bad_experiment_file_is_one_line_naming_the_key(tmp_path: Path, text: str, named: str):
    path = write(tmp_path, text)
    with pytest.raises(DigitrecError) as caught:
        experiments.load(path)
    message = str(caught.value)
    assert named in message and str(path) in message and "\n" not in message


def test_a_grid_is_every_combination_of_its_lists_with_the_common_overrides(tmp_path: Path):
    study = experiments.load(write(tmp_path, """
seeds = [0, 1]
[overrides]
epochs = 3
[[grid]]
name = "{model}-lr{lr}"
model = ["fast", "balanced"]
overrides = { lr = [0.2, 0.4] }
"""))
    assert [run.name for run in study.runs] == ["fast-lr0.2", "fast-lr0.4", "balanced-lr0.2", "balanced-lr0.4"]
    assert all(run.plan.recipe.epochs == 3 and run.seeds == (0, 1) for run in study.runs)
    assert [run.plan.recipe.lr for run in study.runs] == [0.2, 0.4, 0.2, 0.4]
    assert study.runs[2].plan.arguments["widths"] == [32, 64, 128]  # the balanced preset's net


def test_an_experiment_trains_each_run_once_resumes_an_interrupted_one_and_reports(tmp_path: Path, synthetic_npz: Path):
    study = experiments.load(small_study(tmp_path, synthetic_npz))
    out, report_dir = tmp_path / "runs", tmp_path / "report"
    # seed 1 of cnn1 is interrupted in its second epoch: the experiment must continue it, not start it again
    def interrupt_in_epoch_2(line: str) -> None:
        if line.startswith("epoch   2"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.train(study.runs[0].plan, data_spec=study.runs[0].data, out=out / "cnn1" / "seed-1", seed=1, progress=False,
                       log=interrupt_in_epoch_2)
    before = {item.label: (item.status, item.done) for item in experiments.plan(study, out)}
    assert before == {"cnn1/seed-0": ("new", 0), "cnn1/seed-1": ("resume", 1), "cnn1-batch32/seed-0": ("new", 0)}

    lines: list[str] = []
    page = experiments.run(study, out, report_dir, progress=False, log=lines.append)
    assert any("cnn1/seed-1: resuming after epoch 1" in line for line in lines)
    assert checkpoint.read_metadata(out / "cnn1" / "seed-1" / "final.safetensors")["epoch"] == 2
    assert {item.status for item in experiments.plan(study, out)} == {"finished"}

    markdown = (report_dir / "experiment.md").read_text()
    assert "| cnn1 |" in markdown or "| cnn1 (best) |" in markdown
    assert "(n = 2)" in markdown and "98.50 %" in markdown  # two seeds' mean ± sd, beside the published figure
    assert markdown.count("(best)") == 1
    assert {"curves.png", "per-class.png", "accuracy-time.png", "experiment.html"} <= {p.name for p in report_dir.iterdir()}
    assert "data:image/png;base64," in page.read_text()  # one self-contained file

    # run again: nothing is trained, nothing is rewritten
    finals = {p: p.stat().st_mtime_ns for p in out.rglob("final.safetensors")}
    lines.clear()
    experiments.run(study, out, report_dir, progress=False, log=lines.append)
    assert all("kept" in line for line in lines) and len(lines) == 3
    assert {p: p.stat().st_mtime_ns for p in out.rglob("final.safetensors")} == finals


def test_a_run_another_experiment_trained_identically_is_copied_not_trained_again(tmp_path: Path, synthetic_npz: Path):
    root = tmp_path / "experiments"
    first = experiments.load(small_study(tmp_path, synthetic_npz, epochs=1))
    experiments.run(first, root / "first", tmp_path / "report-1", progress=False, log=lambda line: None)
    data = f'"npz:{synthetic_npz}"'
    second = experiments.load(write(tmp_path, f"""
data = {data}
test = {data}
[overrides]
epochs = 1
batch_size = 64
lr = 0.003
optimizer = "adam"
validation = 0.2
[[run]]
name = "the-same-cnn1"
model = "seed001-cnn1"
[[run]]
name = "cnn1-lr"
model = "seed001-cnn1"
overrides = {{ lr = 0.001 }}
""", "second.toml"))
    planned = experiments.plan(second, root / "second")
    assert [(item.label, item.status) for item in planned] == [("the-same-cnn1/seed-0", "copy"), ("cnn1-lr/seed-0", "new")]
    assert planned[0].origin == root / "first" / "cnn1" / "seed-0"

    lines: list[str] = []
    experiments.run(second, root / "second", tmp_path / "report-2", progress=False, log=lines.append)
    assert any("the-same-cnn1/seed-0: trained identically in" in line for line in lines)
    copied, origin = (root / d / "seed-0" / "final.safetensors" for d in ("second/the-same-cnn1", "first/cnn1"))
    assert copied.read_bytes() == origin.read_bytes()
    assert {item.status for item in experiments.plan(second, root / "second")} == {"finished"}


def test_a_run_whose_recipe_changed_is_refused_until_forced(tmp_path: Path, synthetic_npz: Path):
    out = tmp_path / "runs"
    first = experiments.load(small_study(tmp_path, synthetic_npz, epochs=1))
    experiments.run(first, out, tmp_path / "report", progress=False, log=lambda line: None)
    changed = experiments.load(small_study(tmp_path, synthetic_npz, epochs=2))
    assert {item.status for item in experiments.plan(changed, out)} == {"differs"}
    with pytest.raises(DigitrecError, match=r"holds a different run .*recipe.*--force"):
        experiments.run(changed, out, tmp_path / "report", progress=False, log=lambda line: None)
    assert checkpoint.read_metadata(out / "cnn1" / "seed-0" / "final.safetensors")["epoch"] == 1  # nothing was lost
    experiments.run(changed, out, tmp_path / "report", force=True, progress=False, log=lambda line: None)
    assert checkpoint.read_metadata(out / "cnn1" / "seed-0" / "final.safetensors")["epoch"] == 2


def test_the_cli_dry_run_lists_every_run_with_its_time_and_trains_nothing(tmp_path: Path, synthetic_npz: Path):
    path = small_study(tmp_path, synthetic_npz, epochs=1)
    result = run_cli("experiment", str(path), "--out", str(tmp_path / "runs"), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert " 1 epoch " in result.stdout and "1 epochs" not in result.stdout
    assert "cnn1/seed-0" in result.stdout and "cnn1-batch32/seed-0" in result.stdout and "to train" in result.stdout
    assert "total still to train: ~" in result.stdout
    assert not (tmp_path / "runs").exists()
    bad = run_cli("experiment", str(write(tmp_path, "[[run]]\nname = 'a'\nlr = 1", "bad.toml")))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "'run[0].lr'" in bad.stderr


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "experiments").glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_experiment_file_is_valid_and_names_its_reports_figures(path: Path):
    study = experiments.load(path)
    assert study.title and study.runs
    seed_models = [run for run in study.runs if run.model.startswith("seed")]
    # a seed report's models stand beside its figures (a variant of our own, like seed 004 without augmentation, has none)
    assert not seed_models or any(run.published is not None for run in seed_models)
