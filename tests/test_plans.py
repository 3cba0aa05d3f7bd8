"""One resolver decides what a run trains, for the CLI, the Python API and the estimator alike."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import digitrec
from digitrec import models, plans
from digitrec.errors import DigitrecError
from digitrec.inference import open_engine, resolve_device


def test_a_preset_can_be_named_as_the_model_or_as_the_recipe_of_its_own_architecture():
    fast = plans.PRESETS["fast"]
    assert plans.resolve("fast") == fast
    assert plans.resolve(recipe="fast") == fast
    assert plans.resolve("digitnet", recipe="fast") == fast
    assert plans.resolve() == plans.PRESETS["default"]


def test_an_architecture_trains_with_its_reports_recipe_and_overrides_replace_single_fields():
    plan = plans.resolve("seed004", lr=0.01, zoom=0.2)
    assert plan.model == "seed004" and plan.arguments == {}
    assert plan.recipe.lr == 0.01 and plan.recipe.epochs == models.REGISTRY["seed004"].recipe.epochs
    assert plan.recipe.augment.zoom == 0.2 and plan.recipe.augment.rotation == models.REGISTRY["seed004"].recipe.augment.rotation


@pytest.mark.parametrize(("model", "recipe", "message"), [
    ("resnet9000", None, "unknown model 'resnet9000'"),
    ("ensemble", None, "'ensemble' is combined from trained models, not trained itself: use `digitrec ensemble`"),
    (None, "turbo", "unknown preset 'turbo'; choose from fast, balanced, default, elastic"),
    ("seed002", "fast", "the fast preset trains digitnet, not seed002: give a model or a preset, not both"),
])
def test_a_name_that_means_nothing_trainable_is_refused_in_one_line(model, recipe, message: str):
    with pytest.raises(DigitrecError, match=message):
        plans.resolve(model, recipe)


def test_an_unknown_recipe_field_is_refused():
    with pytest.raises(DigitrecError, match="unknown recipe field 'learning_rate'"):
        plans.resolve("fast", learning_rate=0.1)


def test_kaggle_data_holds_out_a_tenth_unless_the_recipe_says_otherwise():
    assert plans.resolve("fast", data="kaggle:train.csv").recipe.validation == 0.1
    assert plans.resolve("fast", data="train.csv").recipe.validation == 0.1
    assert plans.resolve("fast", data="kaggle:train.csv", validation=0.2).recipe.validation == 0.2
    assert plans.resolve("fast").recipe.validation == 0.0


def test_a_seed_model_trains_on_its_reports_data_unless_told_otherwise():
    assert plans.resolve("seed004").data == "kaggle-mnist"  # Kaggle's train.csv, rebuilt from MNIST
    assert plans.resolve("seed000-v2").data == "kaggle-mnist"
    assert plans.resolve("seed002").data == "mnist" and plans.resolve("fast").data == "mnist"
    assert plans.resolve("seed004", data="mnist").data == "mnist"
    assert plans.resolve("seed003-original", data="kaggle-mnist").recipe.validation == 0.1  # Kaggle's CSV: a tenth held out


def test_the_api_trains_the_presets_the_readme_leads_with(tmp_path: Path, synthetic_npz: Path):
    quiet = {"data_spec": f"npz:{synthetic_npz}", "progress": False, "log": lambda line: None}
    by_recipe = digitrec.train("digitnet", recipe="fast", out=tmp_path / "a", **quiet)
    by_name = digitrec.train("fast", out=tmp_path / "b", **quiet)
    for run in (by_recipe, by_name):
        meta = digitrec.load(run.run_dir).meta
        assert meta["arguments"] == plans.PRESETS["fast"].arguments
        assert meta["training"]["recipe"]["epochs"] == 1


def test_training_an_ensemble_by_name_is_refused_before_a_run_directory_is_made(tmp_path: Path):
    with pytest.raises(DigitrecError, match="use `digitrec ensemble`"):
        digitrec.train("ensemble", out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_presets_are_known_without_importing_pytorch():
    script = "import sys; from digitrec import plans; plans.resolve('fast', epochs=2); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr


@pytest.mark.parametrize(("call", "named"), [
    (lambda: plans.resolve("resnet9000"), "model: unknown model"),
    (lambda: plans.resolve(None, "turbo"), "recipe: unknown preset"),
    (lambda: plans.resolve("fast", label_smoothing=2), "label_smoothing: must be"),
    (lambda: resolve_device("tpu"), "device: unknown device 'tpu'"),
    (lambda: open_engine(None, "tensorrt"), "engine: unknown engine 'tensorrt'"),
], ids=["model", "recipe", "recipe field", "device", "engine"])
def test_the_python_api_names_the_argument_not_the_command_lines_option(call, named: str):
    with pytest.raises(DigitrecError) as refused:
        call()
    assert str(refused.value).startswith(named) and "--" not in str(refused.value)
