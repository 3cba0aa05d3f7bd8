"""The `digitrec` command as a user runs it: real subprocesses, real files."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image


def _assert_one_line_error(result, *fragments: str) -> None:
    """Exit code 2 and one error line, the last thing printed (progress lines may come before it)."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("digitrec: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in errors[0]


def test_models_lists_every_architecture_with_the_reports_parameter_counts():
    result = run_cli("models")
    assert result.returncode == 0
    architectures, recipes = result.stdout.split("\n\n")
    lines = {line.split()[0]: line for line in architectures.splitlines()[1:]}
    assert "34,826" in lines["seed001-cnn5"]
    assert "887,530" in lines["seed002"]
    assert "437,310" in lines["seed001-mlp6"]
    assert len([name for name in lines if name.startswith("seed")]) == 26
    assert "digitnet" in lines
    assert [line.split()[0] for line in recipes.splitlines()[1:]] == ["fast", "balanced", "default", "elastic"]


def test_train_offers_every_preset_by_name():
    from digitrec import plans

    assert "--recipe {" + ",".join(plans.PRESETS) + "}" in run_cli("train", "--help").stdout


def test_an_ensemble_of_an_unknown_preset_is_refused_in_one_line_before_anything_is_written(tmp_path: Path):
    result = run_cli("ensemble", "--recipe", "default,elastc", "--out", str(tmp_path / "ens"))
    _assert_one_line_error(result, "unknown preset 'elastc'", "--recipe")
    assert not (tmp_path / "ens").exists()


def test_model_and_recipe_are_alternatives():
    result = run_cli("train", "--model", "seed002", "--recipe", "fast")
    assert result.returncode == 2 and "not both" in result.stderr


def test_train_then_evaluate_writes_a_report_and_json_metrics(tmp_path: Path, synthetic_npz: Path):
    run = tmp_path / "run"
    trained = run_cli("train", "--model", "seed001-cnn1", "--data", f"npz:{synthetic_npz}", "--epochs", "3",
                      "--lr", "0.003", "--out", str(run))
    assert trained.returncode == 0, trained.stderr
    assert "epoch   3/3" in trained.stdout and "val loss" in trained.stdout
    evaluated = run_cli("evaluate", str(run), "--data", f"npz:{synthetic_npz}", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    metrics = json.loads(evaluated.stdout)
    assert 0.9 < metrics["accuracy"] <= 1.0
    assert {"precision", "recall", "f1", "per_class", "confusion_matrix"} <= set(metrics)
    assert sum(map(sum, metrics["confusion_matrix"])) == 200
    page = (run / "report" / "report.html").read_text()
    # confusion, mistakes, curves, attributions and at least one layer's feature maps, inlined: self-contained
    assert page.count("data:image/png;base64,") >= 5
    markdown = (run / "report" / "report.md").read_text()
    assert "Per class" in markdown and "What the model looks at" in markdown and "feature maps" in markdown
    metrics_only = run_cli("evaluate", str(run), "--data", f"npz:{synthetic_npz}", "--no-report", "--out", str(tmp_path / "none"))
    assert metrics_only.returncode == 0 and "accuracy" in metrics_only.stdout
    assert not (tmp_path / "none").exists()


def test_data_stats_prints_class_counts_and_writes_plots(tmp_path: Path, synthetic_npz: Path):
    result = run_cli("data", "stats", "--data", f"npz:{synthetic_npz}", "--out", str(tmp_path / "stats"))
    assert result.returncode == 0, result.stderr
    assert "600 images" in result.stdout
    assert "  3:     60" in result.stdout
    assert (tmp_path / "stats" / "class_histogram.png").stat().st_size > 1000
    assert (tmp_path / "stats" / "samples.png").stat().st_size > 1000


def test_a_bad_csv_row_is_one_line_naming_file_line_and_column(tmp_path: Path):
    csv = tmp_path / "train.csv"
    header = "label," + ",".join(f"pixel{i}" for i in range(784))
    csv.write_text(header + "\n" + "3," + ",".join(["0"] * 784) + "\n" + "4," + ",".join(["0"] * 10 + ["x"] + ["0"] * 773) + "\n")
    result = run_cli("train", "--model", "seed001-cnn1", "--data", f"kaggle:{csv}", "--out", str(tmp_path / "run"))
    _assert_one_line_error(result, str(csv), "line 3", "pixel10", "'x'")


def test_a_pickled_model_is_refused_on_the_command_line(tmp_path: Path):
    evil = tmp_path / "model.pt"
    evil.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    _assert_one_line_error(run_cli("evaluate", str(evil)), str(evil), "never unpickles")


def test_a_bad_idx_file_is_one_line_with_its_byte_offset(tmp_path: Path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x07" + bytes(100))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + bytes(3))
    result = run_cli("train", "--data-dir", str(tmp_path), "--out", str(tmp_path / "run"))
    _assert_one_line_error(result, "train-images-idx3-ubyte", "byte 0", "bad magic number 0x00000807")


def test_offline_without_mnist_says_where_to_put_the_files(tmp_path: Path):
    empty = tmp_path / "mnist"
    result = run_cli("data", "stats", env={"DIGITREC_DATA": str(empty), "DIGITREC_MNIST_MIRRORS": "http://127.0.0.1:9/"})
    _assert_one_line_error(result, str(empty), "put the four MNIST files there")
    assert not empty.exists() or not any(empty.iterdir())  # no partial download left behind


def test_unknown_model_and_missing_checkpoint_are_bad_input(tmp_path: Path):
    _assert_one_line_error(run_cli("train", "--model", "resnet9000"), "resnet9000")
    _assert_one_line_error(run_cli("evaluate", str(tmp_path / "missing.safetensors")), "no such checkpoint")


def test_seed001_cnn5_learns_real_mnist_digits_in_one_epoch(tmp_path: Path, mnist_dir: Path):
    from digitrec import data

    train, test = (data.load_mnist(part, mnist_dir, download=False) for part in ("train", "test"))
    digits = tmp_path / "mnist.npz"  # a quarter of MNIST's training digits (all of them: 42 s of the suite, 97.5 %)
    np.savez(digits, x_train=train.images[:15_000], y_train=train.labels[:15_000], x_test=test.images, y_test=test.labels)
    run = tmp_path / "cnn5"
    trained = run_cli("train", "--model", "seed001-cnn5", "--epochs", "1", "--data", f"npz:{digits}", "--out", str(run), "--quiet")
    assert trained.returncode == 0, trained.stderr
    evaluated = run_cli("evaluate", str(run), "--data", f"npz:{digits}", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    metrics = json.loads(evaluated.stdout)
    assert metrics["count"] == 10_000
    assert metrics["accuracy"] >= 0.90  # 92.9-93.9 % over 10 seeds (its report: 99.24 % after 30 epochs on all 60,000)


def test_a_dry_run_says_how_long_training_would_take_and_trains_nothing(tmp_path: Path, synthetic_npz: Path, capsys: pytest.CaptureFixture,
                                                                         monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = _main(capsys, "train", "--model", "seed001-cnn1", "--data", f"npz:{synthetic_npz}", "--epochs", "1", "--dry-run")
    assert code == 0, err
    assert out.startswith("seed001-cnn1, 1 epoch on npz:") and "of training on this machine" in out and "nothing trained" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits.npz"]  # no runs/ folder
    code, _, err = _main(capsys, "train", "--resume", str(tmp_path), "--dry-run")
    assert code == 2 and err.startswith("digitrec: error: --dry-run: ")


@pytest.mark.parametrize("argv", [["train", "--epochs", "zero"], ["evaluate"], ["fly"]])
def test_malformed_command_lines_exit_2(argv: list[str]):
    assert run_cli(*argv).returncode == 2


def test_compare_puts_several_runs_in_one_report(tmp_path: Path, synthetic_npz: Path):
    import digitrec

    for name, model in (("a", "seed001-cnn1"), ("b", "seed001-mlp5")):  # trained here: the command under test is compare
        digitrec.train(model, data_spec=f"npz:{synthetic_npz}", epochs=2, out=tmp_path / name, progress=False, log=lambda line: None)
    result = run_cli("compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "cmp"))
    assert result.returncode == 0, result.stderr
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| a | seed001-cnn1 | 54,410 | 2 |" in table
    assert "| b | seed001-mlp5 | 318,010 | 2 |" in table
    assert "data:image/png;base64," in (tmp_path / "cmp" / "compare.html").read_text()


# --- the edges a new user hits: one line and exit code 2, nothing lost ----------------------------


def _main(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    """The real command in this process (no start-up cost): exit code, stdout, stderr."""
    from digitrec import cli

    try:
        code = cli.main(list(argv))
    except SystemExit as e:  # argparse's own refusals
        code = int(e.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("digitrec: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], err


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A fast-preset run on synthetic digits, and a Kaggle-style test.csv without labels."""
    from conftest import synthetic_digits

    import digitrec

    folder = tmp_path_factory.mktemp("small")
    x, y = synthetic_digits(300, seed=1)
    np.savez(folder / "digits.npz", x_train=x, y_train=y, x_test=x[:50], y_test=y[:50])
    run = digitrec.train("fast", data_spec=f"npz:{folder / 'digits.npz'}", out=folder / "run", progress=False, log=lambda line: None)
    header = ",".join(f"pixel{i}" for i in range(784))
    rows = "\n".join(",".join(map(str, image.reshape(-1))) for image in x[:5])
    (folder / "test.csv").write_text(f"{header}\n{rows}\n")
    return run.run_dir, folder / "test.csv"


@pytest.mark.parametrize(("option", "value"), [("--lr", "nan"), ("--lr", "inf"), ("--momentum", "nan"), ("--rotation", "nan"),
                                               ("--ema", "1.5"), ("--label-smoothing", "2"), ("--epochs", "0"), ("--device", "tpu")])
def test_a_bad_recipe_value_or_device_is_one_line_naming_the_option(capsys, tmp_path: Path, synthetic_npz: Path, option: str, value: str):
    run = tmp_path / "run"
    code, _, err = _main(capsys, "train", "--recipe", "fast", "--data", f"npz:{synthetic_npz}", "--out", str(run), option, value)
    _one_line_error(code, err, f"{option}: ")
    assert not run.exists()


def test_evaluate_names_the_device_as_the_problem(capsys, small_run: tuple[Path, Path]):
    run, _ = small_run
    _one_line_error(*_main(capsys, "evaluate", str(run), "--device", "tpu")[::2], "--device: unknown device 'tpu'")
    code, _, err = _main(capsys, "evaluate", str(run), "--engine", "onnx", "--device", "cuda")
    _one_line_error(code, err, "--device: ONNX Runtime runs on the CPU here")
    assert "final.onnx" not in err


def test_resume_refuses_options_it_cannot_apply_and_says_when_a_run_is_finished(capsys, small_run: tuple[Path, Path]):
    run, _ = small_run
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    _one_line_error(*_main(capsys, "train", "--resume", str(run), "--recipe", "balanced")[::2], "--recipe: only --epochs, --device")
    _one_line_error(*_main(capsys, "train", "--resume", str(run), "--lr", "0.1")[::2], "--lr: only --epochs")
    code, out, _ = _main(capsys, "train", "--resume", str(run), "--quiet")
    assert code == 0 and "already finished (1/1 epochs); nothing to do" in out
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_outputs_in_the_wrong_kind_of_place_are_one_line_naming_the_path(capsys, tmp_path: Path, small_run: tuple[Path, Path],
                                                                         synthetic_npz: Path):
    run, test_csv = small_run
    folder, file = tmp_path / "folder", tmp_path / "file"
    folder.mkdir()
    file.write_text("keep")
    image = tmp_path / "d.png"
    Image.fromarray(np.eye(28, dtype=np.uint8) * 255).save(image)
    refusals = [
        (["submit", str(run), "--test", str(test_csv), "-o", str(folder)], f"{folder}: is a folder; give a file name"),
        (["export", str(run), "--onnx", str(folder)], f"{folder}: is a folder; give a file name"),
        (["train", "--recipe", "fast", "--data", f"npz:{synthetic_npz}", "--out", str(file)], f"{file}: is a file, not a folder"),
        (["train", "--recipe", "fast", "--data", f"npz:{synthetic_npz}", "--out", str(file / "sub")], f"{file} is a file, not a folder"),
        (["evaluate", str(run), "--data", f"npz:{synthetic_npz}", "--out", str(file)], f"{file}: is a file, not a folder"),
        (["compare", str(run), "--out", str(file)], f"{file}: is a file, not a folder"),
        (["predict", str(run), str(image), "--save-preprocessed", str(file)], f"{file}: is a file, not a folder"),
        (["data", "stats", "--data", f"npz:{synthetic_npz}", "--out", str(file)], f"{file}: is a file, not a folder"),
    ]
    for argv, message in refusals:
        code, out, err = _main(capsys, *argv)
        _one_line_error(code, err, message)
        assert out == "" or "predict" not in argv
    assert list(folder.iterdir()) == [] and file.read_text() == "keep"


def test_a_folder_nobody_may_write_in_is_one_line_and_stays_empty(tmp_path: Path, small_run: tuple[Path, Path], synthetic_npz: Path):
    import os
    import shutil
    import subprocess
    import sys

    run, test_csv = small_run
    locked = tmp_path / "locked"
    locked.mkdir()
    image = tmp_path / "d.png"
    Image.fromarray(np.eye(28, dtype=np.uint8) * 255).save(image)
    commands = [
        ["train", "--recipe", "fast", "--data", f"npz:{synthetic_npz}", "--out", str(locked / "run"), "--quiet"],
        ["export", str(run), "--onnx", str(locked / "model.onnx")],
        ["submit", str(run), "--test", str(test_csv), "-o", str(locked / "submission.csv")],
        ["evaluate", str(run), "--data", f"npz:{synthetic_npz}", "--out", str(locked / "report")],
        ["predict", str(run), str(image), "--save-preprocessed", str(locked / "seen")],
        ["data", "stats", "--data", f"npz:{synthetic_npz}"],  # into reports/ under the working directory
    ]
    script = ("import contextlib, io, json, sys\nfrom digitrec import cli\nresults = []\n"
              "for argv in json.loads(sys.argv[1]):\n    err = io.StringIO()\n"
              "    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):\n"
              "        results.append([cli.main(argv), err.getvalue()])\nprint(json.dumps(results))\n")
    prefix = []
    if os.geteuid() == 0:  # root writes anywhere: drop the capabilities that let it, as an ordinary user lacks them
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv to drop root's file-permission override")
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]
    locked.chmod(0o555)
    try:
        result = subprocess.run([*prefix, sys.executable, "-c", script, json.dumps(commands)], capture_output=True, text=True,
                                cwd=locked, timeout=300)
    finally:
        locked.chmod(0o755)
    assert result.returncode == 0, result.stderr
    for argv, (code, err) in zip(commands, json.loads(result.stdout), strict=True):
        _one_line_error(code, err, "Permission denied", str(locked) if argv[0] != "data" else "reports")
    assert list(locked.iterdir()) == []


def test_every_option_of_every_command_says_what_it_does(capsys):
    import argparse

    from digitrec import cli

    def options(parser: argparse.ArgumentParser, name: str):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    yield from options(sub, f"{name} {sub_name}")
            elif action.option_strings and not isinstance(action, argparse._HelpAction):
                yield f"{name} {action.option_strings[-1]}", action.help

    undocumented = [option for option, text in options(cli.build_parser(), "digitrec") if not text]
    assert undocumented == []
    train_help = _main(capsys, "train", "--help")[1]
    described = train_help.split("recipe (defaults")[1]  # below the usage line
    assert "degrees" in described.split("--rotation DEGREES")[1].split("--zoom")[0]
    assert "%" in described.split("--zoom FRACTION")[1].split("--shift")[0]
    assert "px" in described.split("--shift FRACTION")[1].split("--elastic")[0]
    code, out, _ = _main(capsys, "--version")
    assert code == 0 and out.startswith("digitrec ")


def test_data_stats_on_a_set_without_labels_shows_pixels_and_samples_only(capsys, tmp_path: Path, small_run: tuple[Path, Path]):
    _, test_csv = small_run
    code, out, err = _main(capsys, "data", "stats", "--data", f"kaggle:{test_csv}", "--out", str(tmp_path / "stats"))
    assert code == 0, err
    assert "test.csv: 5 images" in out and "no labels in this set" in out and "pixels: mean" in out
    assert "  0:" not in out
    assert sorted(p.name for p in (tmp_path / "stats").iterdir()) == ["samples.png"]
