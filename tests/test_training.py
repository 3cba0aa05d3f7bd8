"""Training: run directories that never lose work, reproducible numbers, every recipe knob."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import mnist_npz_file

from digitrec import checkpoint, models, plans, rundir, training
from digitrec.errors import DigitrecError
from digitrec.recipes import Augment, Recipe


def numbers(history: list[dict]) -> list[dict]:
    """A run's metrics without its timings, which no two runs share."""
    return [{k: v for k, v in row.items() if k not in ("seconds", "elapsed")} for row in history]


QUICK = Recipe(optimizer="adam", lr=3e-3, batch_size=64, epochs=3, validation=0.2)


def _train(tmp_path: Path, npz: Path, name: str = "run", recipe: Recipe = QUICK, **kwargs) -> training.RunResult:
    return training.train(plans.resolve("seed001-cnn1", recipe), data_spec=f"npz:{npz}", out=tmp_path / name, progress=False,
                       log=lambda line: None, **kwargs)


def test_a_run_writes_config_metrics_checkpoints_state_and_curves(tmp_path: Path, synthetic_npz: Path):
    result = _train(tmp_path, synthetic_npz)
    names = {p.name for p in result.run_dir.iterdir()}
    assert {"config.json", "metrics.jsonl", "final.safetensors", "best.safetensors", "state.safetensors", "curves.png"} <= names
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"} <= set(rows[0])
    assert rows[-1]["val_accuracy"] > 0.9  # the synthetic digits are easy
    meta = checkpoint.read_metadata(result.final)
    assert meta["training"]["recipe"]["optimizer"] == "adam"
    assert len(meta["data"]["checksum"]) == 64
    assert meta["epoch"] == 3


def test_same_seed_gives_the_same_numbers(tmp_path: Path, synthetic_npz: Path):
    recipe = Recipe(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=64, epochs=2,
                    augment=Augment(rotation=10, zoom=0.1, shift=0.1), label_smoothing=0.1)
    first = _train(tmp_path, synthetic_npz, "a", recipe)
    second = _train(tmp_path, synthetic_npz, "b", recipe)
    third = _train(tmp_path, synthetic_npz, "c", recipe, seed=1)
    assert numbers(first.history) == numbers(second.history)
    assert numbers(first.history) != numbers(third.history)


def test_an_interrupted_run_resumes_to_the_same_result(tmp_path: Path, synthetic_npz: Path):
    recipe = Recipe(optimizer="adam", lr=3e-3, batch_size=64, epochs=3, ema=0.9,
                    augment=Augment(rotation=5, shift=0.05), schedule="onecycle", outliers=0.5)
    whole = _train(tmp_path, synthetic_npz, "whole", recipe)

    def interrupt_in_epoch_2(line: str) -> None:
        if line.startswith("epoch   2"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.train(plans.resolve("seed001-cnn1", recipe), data_spec=f"npz:{synthetic_npz}", out=tmp_path / "cut", progress=False,
                       log=interrupt_in_epoch_2)
    assert checkpoint.read_metadata(tmp_path / "cut" / "final.safetensors")["epoch"] == 1  # epoch 1 was kept
    resumed = training.resume(tmp_path / "cut", progress=False, log=lambda line: None)
    assert numbers(resumed.history) == numbers(whole.history)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(checkpoint.load(resumed.final).model(x), checkpoint.load(whole.final).model(x))


def test_a_plain_phase_trains_without_augmentation_and_before_the_plateau_schedule_watches(tmp_path: Path, synthetic_npz: Path):
    plain = replace(QUICK, epochs=2)
    phased = replace(plain, epochs=3, plain_epochs=2, schedule="plateau", plateau_patience=0, plateau_factor=0.5,
                     augment=Augment(rotation=10, shift=0.1))
    first = _train(tmp_path, synthetic_npz, "plain", plain)
    second = _train(tmp_path, synthetic_npz, "phased", phased)
    assert numbers(second.history[:2]) == numbers(first.history)  # the first two epochs: no jitter, the same learning rate
    assert second.history[2]["lr"] == QUICK.lr  # the plateau schedule's first watched epoch sets its best: no reduction yet


def test_a_watched_test_set_is_measured_every_epoch_and_chooses_nothing(tmp_path: Path, synthetic_npz: Path):
    recipe = replace(QUICK, validation=0.0)
    plain = _train(tmp_path, synthetic_npz, "plain", recipe)
    watched = _train(tmp_path, synthetic_npz, "watched", recipe, watch=f"npz:{synthetic_npz}")
    assert all({"test_loss", "test_accuracy"} <= set(row) for row in watched.history)
    assert numbers([{k: v for k, v in row.items() if not k.startswith("test_")} for row in watched.history]) == numbers(plain.history)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():  # the same weights: nothing was chosen by the test set
        assert torch.equal(checkpoint.load(watched.final).model(x), checkpoint.load(plain.final).model(x))


def test_tensorboard_gets_every_epochs_metrics_only_when_asked(tmp_path: Path, synthetic_npz: Path, monkeypatch: pytest.MonkeyPatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = _train(tmp_path, synthetic_npz, tensorboard=tmp_path / "tb")
    events = EventAccumulator(str(tmp_path / "tb" / "run")).Reload()
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"} <= set(events.Tags()["scalars"])
    assert [event.step for event in events.Scalars("val_accuracy")] == [1, 2, 3]
    assert events.Scalars("val_accuracy")[-1].value == pytest.approx(result.history[-1]["val_accuracy"])
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if it were not installed
    with pytest.raises(DigitrecError, match=r"^tensorboard: needs the tensorboard package"):
        _train(tmp_path, synthetic_npz, "without", tensorboard=tmp_path / "tb")
    assert not (tmp_path / "without").exists()  # refused before anything was written


def test_keep_epochs_saves_every_epochs_model_and_elapsed_time(tmp_path: Path, synthetic_npz: Path):
    result = _train(tmp_path, synthetic_npz, keep_epochs=True)
    kept = sorted(p.name for p in result.run_dir.glob("epoch-*.safetensors"))
    assert kept == ["epoch-001.safetensors", "epoch-002.safetensors", "epoch-003.safetensors"]
    assert checkpoint.read_metadata(result.run_dir / "epoch-002.safetensors")["epoch"] == 2
    elapsed = [row["elapsed"] for row in result.history]
    assert elapsed == sorted(elapsed) and elapsed[-1] == pytest.approx(sum(row["seconds"] for row in result.history))


def test_an_existing_run_is_never_overwritten(tmp_path: Path, synthetic_npz: Path):
    result = _train(tmp_path, synthetic_npz)
    before = {p.name: p.read_bytes() for p in result.run_dir.iterdir()}
    with pytest.raises(DigitrecError, match="already holds a training run"):
        _train(tmp_path, synthetic_npz)
    assert {p.name: p.read_bytes() for p in result.run_dir.iterdir()} == before


def test_early_stopping_ends_the_run_when_validation_stalls(tmp_path: Path, synthetic_npz: Path):
    recipe = Recipe(optimizer="sgd", lr=1e-9, batch_size=64, epochs=10, early_stopping=2)
    result = _train(tmp_path, synthetic_npz, recipe=recipe)
    assert len(result.history) < 10


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "rmsprop", "adadelta"])
def test_every_optimizer_trains_and_spares_biases_from_weight_decay(optimizer: str):
    recipe = Recipe(optimizer=optimizer, weight_decay=1e-4)
    built = training.make_optimizer(recipe, models.create("digitnet"))
    decayed, spared = built.param_groups
    assert decayed["weight_decay"] == 1e-4 and spared["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decayed["params"]) and all(p.ndim <= 1 for p in spared["params"])


def test_one_cycle_rises_to_the_peak_and_falls_to_zero():
    schedule = training.LearningRate(Recipe(lr=0.1, epochs=10, schedule="onecycle", warmup=0.2), steps_per_epoch=10)
    rates = [schedule.at(step) for step in range(100)]
    assert rates[0] == pytest.approx(0.004)
    assert max(rates) == pytest.approx(0.1) and rates.index(max(rates)) == 20
    assert rates[-1] < 0.002


def test_one_cycle_annealed_by_cosine_is_pytorchs_one_cycle_step_for_step():
    """The row reader and the detector were first trained with torch's OneCycleLR; their recipes say ``anneal = "cos"``."""
    recipe = Recipe(optimizer="adamw", lr=3e-3, epochs=4, schedule="onecycle", warmup=0.3, anneal="cos")
    ours = training.LearningRate(recipe, steps_per_epoch=25)
    optimizer = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=recipe.lr)
    theirs = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=100, pct_start=recipe.warmup)
    for step in range(100):
        group = optimizer.param_groups[0]
        assert ours.at(step) == pytest.approx(group["lr"], rel=1e-9) and ours.momentum_at(step) == pytest.approx(group["betas"][0])
        optimizer.step()
        theirs.step()
    assert training.LearningRate(replace(recipe, anneal="linear"), 25).momentum_at(50) is None  # the triangle cycles nothing


def test_cosine_and_step_schedules():
    cosine = training.LearningRate(Recipe(lr=0.1, epochs=2, schedule="cosine"), steps_per_epoch=50)
    assert cosine.at(0) == pytest.approx(0.1) and cosine.at(50) == pytest.approx(0.05)
    step = training.LearningRate(Recipe(lr=0.1, epochs=30, schedule="step", step_size=10, gamma=0.5), steps_per_epoch=5)
    assert step.at(49) == pytest.approx(0.1) and step.at(50) == pytest.approx(0.05) and step.at(100) == pytest.approx(0.025)


def test_plateau_halves_the_rate_after_patience_epochs_without_gain_as_keras_does():
    schedule = training.LearningRate(Recipe(lr=1e-3, schedule="plateau", plateau_patience=3, plateau_factor=0.5, min_lr=3e-4),
                                  steps_per_epoch=1)
    for accuracy in (0.90, 0.95, 0.95, 0.95):
        schedule.epoch_end(accuracy)
    assert schedule.at(0) == pytest.approx(1e-3)  # two stalled epochs: not yet
    schedule.epoch_end(0.95)
    assert schedule.at(0) == pytest.approx(5e-4)  # third stalled epoch: halved
    for _ in range(6):
        schedule.epoch_end(0.95)
    assert schedule.at(0) == pytest.approx(3e-4)  # never below min_lr


def test_recipe_overrides_replace_only_what_is_given():
    base = models.REGISTRY["seed004"].recipe
    changed = plans.with_overrides(base, lr=0.01, epochs=None, zoom=0.2)
    assert changed.lr == 0.01 and changed.epochs == base.epochs
    assert changed.augment == Augment(rotation=10, zoom=0.2, shift=0.1)
    with pytest.raises(DigitrecError, match="unknown optimizer"):
        plans.with_overrides(base, optimizer="lion")


def test_the_python_api_trains_with_recipe_fields_as_keywords(tmp_path: Path, synthetic_npz: Path):
    import digitrec

    run = digitrec.train("seed001-cnn1", epochs=1, lr=0.003, data_spec=f"npz:{synthetic_npz}", out=tmp_path / "api",
                         progress=False, log=lambda line: None)
    assert run.history[0]["epoch"] == 1
    assert digitrec.load(run.run_dir).meta["training"]["recipe"]["lr"] == 0.003


def test_an_ensemble_averages_its_members_and_a_rerun_reuses_them(tmp_path: Path, synthetic_npz: Path):
    quiet = {"data_spec": f"npz:{synthetic_npz}", "progress": False, "log": lambda line: None}
    result = training.train_ensemble("fast", 2, out=tmp_path / "ens", **quiet)
    ensemble = checkpoint.load(result.final)
    assert ensemble.architecture == "ensemble"
    members = [checkpoint.load(tmp_path / "ens" / f"member-{i}").model for i in range(2)]
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        expected = torch.stack([m(x).softmax(1) for m in members]).mean(0)
        assert torch.allclose(ensemble.model(x).exp(), expected, atol=1e-6)
    first_member = (tmp_path / "ens" / "member-0" / "final.safetensors").read_bytes()
    again = training.train_ensemble("fast", 2, out=tmp_path / "ens", **quiet)
    assert (tmp_path / "ens" / "member-0" / "final.safetensors").read_bytes() == first_member  # not retrained
    with torch.no_grad():
        assert torch.allclose(checkpoint.load(again.final).model(x), ensemble.model(x))


def test_ensemble_members_cycle_through_the_given_presets_with_consecutive_seeds(tmp_path: Path, synthetic_npz: Path):
    quiet = {"data_spec": f"npz:{synthetic_npz}", "progress": False, "log": lambda line: None}
    result = training.train_ensemble(["fast", "balanced"], 3, out=tmp_path / "ens", seed=7, **quiet)
    configs = [json.loads((tmp_path / "ens" / f"member-{i}" / "config.json").read_text()) for i in range(3)]
    expected = [plans.PRESETS[name] for name in ("fast", "balanced", "fast")]
    assert [c["arguments"] for c in configs] == [p.arguments for p in expected]
    assert [c["recipe"]["epochs"] for c in configs] == [p.recipe.epochs for p in expected]
    assert [c["seed"] for c in configs] == [7, 8, 9]
    members = checkpoint.load(result.final).meta["arguments"]["members"]
    assert [m["arguments"] for m in members] == [p.arguments for p in expected]


@pytest.mark.parametrize(("presets", "members", "message"), [
    ("fast", 0, "^members: an ensemble needs at least one member"),
    (["fast", "fastest"], 2, "^presets: unknown preset 'fastest'"),
    ([], 2, "^presets: an ensemble needs at least one preset"),
])
def test_a_bad_ensemble_is_refused_before_anything_is_written(tmp_path: Path, presets, members: int, message: str):
    with pytest.raises(DigitrecError, match=message):
        training.train_ensemble(presets, members, out=tmp_path / "ens")
    assert not (tmp_path / "ens").exists()


def test_the_elastic_preset_is_the_default_net_on_warped_digits():
    elastic, default = plans.PRESETS["elastic"], plans.PRESETS["default"]
    assert (elastic.model, elastic.arguments) == (default.model, default.arguments)
    assert elastic.recipe.augment.elastic > 0 and default.recipe.augment.elastic == 0
    assert replace(elastic.recipe, augment=default.recipe.augment) == default.recipe


def test_digitrecs_sgd_computes_what_torch_sgd_does():
    torch.manual_seed(0)
    ours_model = models.create("seed001-cnn1")
    torch_model = models.create("seed001-cnn1")
    torch_model.load_state_dict(ours_model.state_dict())
    recipe = Recipe(optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)
    ours = training.make_optimizer(recipe, ours_model)
    decay = [p for p in torch_model.parameters() if p.ndim > 1]
    rest = [p for p in torch_model.parameters() if p.ndim <= 1]
    reference = torch.optim.SGD([{"params": decay, "weight_decay": 1e-3}, {"params": rest, "weight_decay": 0.0}],
                                lr=0.05, momentum=0.9, nesterov=True)
    for _ in range(3):
        x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
        for model, optimizer in ((ours_model, ours), (torch_model, reference)):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    for mine, theirs in zip(ours_model.parameters(), torch_model.parameters(), strict=True):
        assert torch.allclose(mine, theirs, atol=1e-6)


def test_sgd_training_never_imports_torch_dynamo(tmp_path: Path, synthetic_npz: Path):
    """torch._dynamo takes 1.3-2 s to import: the fast recipe cannot afford it."""
    import subprocess
    import sys

    script = "\n".join([
        "import sys",
        "from digitrec import cli",
        f"cli.main(['train', '--recipe', 'fast', '--data', 'npz:{synthetic_npz}', '--out', '{tmp_path / 'run'}', '--quiet'])",
        "print('torch._dynamo' in sys.modules)",
    ])
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"


# --- runs that are finished, continued, diverged or in the way ------------------------------------


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_an_ensemble_never_replaces_a_training_run_nor_a_run_an_ensemble(tmp_path: Path, synthetic_npz: Path):
    quiet = {"data_spec": f"npz:{synthetic_npz}", "progress": False, "log": lambda line: None}
    run = training.train(plans.PRESETS["fast"], out=tmp_path / "fast1", **quiet)
    before = _files(run.run_dir)
    with pytest.raises(DigitrecError, match="already holds a training run"):
        training.train_ensemble("fast", 2, out=run.run_dir, **quiet)
    assert _files(run.run_dir) == before
    ensemble = training.train_ensemble("fast", 1, out=tmp_path / "ens", **quiet)
    before = _files(ensemble.run_dir)
    with pytest.raises(DigitrecError, match="already holds an ensemble"):
        training.train(plans.PRESETS["fast"], out=ensemble.run_dir, **quiet)
    assert _files(ensemble.run_dir) == before


def test_a_folder_with_other_files_in_it_is_never_used_for_a_run(tmp_path: Path, synthetic_npz: Path):
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "chapter1.tex").write_text("\\section{Results}")
    with pytest.raises(DigitrecError, match="is not empty"):
        _train(tmp_path, synthetic_npz, "thesis")
    assert [p.name for p in (tmp_path / "thesis").iterdir()] == ["chapter1.tex"]


def test_a_file_given_as_the_run_directory_is_named_before_anything_is_written(tmp_path: Path, synthetic_npz: Path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DigitrecError, match="is a file, not a folder"):
        _train(tmp_path, synthetic_npz, "file")
    with pytest.raises(DigitrecError, match=f"{tmp_path / 'file'} is a file, not a folder"):
        _train(tmp_path, synthetic_npz, "file/sub")
    assert (tmp_path / "file").read_text() == "x"


def test_bad_training_data_leaves_no_run_directory_behind(tmp_path: Path):
    bad = tmp_path / "train.csv"
    bad.write_text("label,pixel0\n1,2\n")
    with pytest.raises(DigitrecError):
        training.train(plans.PRESETS["fast"], data_spec=f"kaggle:{bad}", out=tmp_path / "run", progress=False, log=lambda line: None)
    assert not (tmp_path / "run").exists()


def test_a_diverging_run_stops_with_a_clear_error_instead_of_saving_a_nan_model(tmp_path: Path, synthetic_npz: Path):
    recipe = Recipe(optimizer="sgd", lr=1e12, batch_size=64, epochs=2, validation=0.0)
    with pytest.raises(DigitrecError, match=r"training diverged: the loss became nan in epoch 1(, step \d+)?; try a lower learning rate"):
        _train(tmp_path, synthetic_npz, recipe=recipe)
    assert not (tmp_path / "run" / "final.safetensors").exists()


def test_resuming_a_finished_run_changes_nothing_and_says_so(tmp_path: Path, synthetic_npz: Path):
    result = _train(tmp_path, synthetic_npz)
    before = _files(result.run_dir)
    lines: list[str] = []
    again = training.resume(result.run_dir, progress=False, log=lines.append)
    assert lines == [f"{result.run_dir}: already finished (3/3 epochs); nothing to do"]
    assert numbers(again.history) == numbers(result.history)
    assert _files(result.run_dir) == before


def test_an_early_stopped_run_stays_stopped(tmp_path: Path, synthetic_npz: Path):
    result = _train(tmp_path, synthetic_npz, recipe=Recipe(optimizer="sgd", lr=1e-9, batch_size=64, epochs=10, early_stopping=2))
    stopped_at = len(result.history)
    before = _files(result.run_dir)
    lines: list[str] = []
    training.resume(result.run_dir, progress=False, log=lines.append)
    assert "already finished" in lines[0] and _files(result.run_dir) == before
    with pytest.raises(DigitrecError, match=f"stopped early at epoch {stopped_at}"):
        training.resume(result.run_dir, epochs=20, progress=False, log=lambda line: None)


def test_more_epochs_train_a_finished_run_further_and_fewer_are_refused(tmp_path: Path, synthetic_npz: Path):
    result = _train(tmp_path, synthetic_npz, recipe=replace(QUICK, epochs=2))
    lines: list[str] = []
    longer = training.resume(result.run_dir, epochs=3, progress=False, log=lines.append)
    assert lines[0] == f"resuming {result.run_dir} at epoch 3/3"
    assert [row["epoch"] for row in longer.history] == [1, 2, 3]
    assert numbers(longer.history)[:2] == numbers(result.history)
    assert json.loads((result.run_dir / "config.json").read_text())["recipe"]["epochs"] == 3
    assert checkpoint.read_metadata(result.final)["epoch"] == 3
    with pytest.raises(DigitrecError, match="has trained 3 epochs already"):
        training.resume(result.run_dir, epochs=1, progress=False, log=lambda line: None)


def test_rerunning_a_finished_ensemble_says_so_for_every_member_and_the_whole(tmp_path: Path, synthetic_npz: Path):
    quiet = {"data_spec": f"npz:{synthetic_npz}", "progress": False}
    training.train_ensemble("fast", 2, out=tmp_path / "ens", log=lambda line: None, **quiet)
    before = _files(tmp_path / "ens")
    lines: list[str] = []
    training.train_ensemble("fast", 2, out=tmp_path / "ens", log=lines.append, **quiet)
    assert [line for line in lines if "already finished" in line] == [
        f"{tmp_path / 'ens' / 'member-0'}: already finished (1/1 epochs); nothing to do",
        f"{tmp_path / 'ens' / 'member-1'}: already finished (1/1 epochs); nothing to do",
        f"{tmp_path / 'ens'}: already finished (2 members); nothing to do",
    ]
    assert not any("resuming" in line for line in lines)
    assert _files(tmp_path / "ens") == before
    with pytest.raises(DigitrecError, match="this ensemble was made with seed 0, not 5"):
        training.train_ensemble("fast", 2, out=tmp_path / "ens", seed=5, log=lambda line: None, **quiet)


def test_a_run_whose_config_names_an_unknown_model_is_one_line(tmp_path: Path, synthetic_npz: Path):
    result = _train(tmp_path, synthetic_npz)
    config = json.loads((result.run_dir / "config.json").read_text())
    (result.run_dir / "config.json").write_text(json.dumps({**config, "model": "resnet9000"}))
    with pytest.raises(DigitrecError, match="unknown model 'resnet9000'"):
        training.resume(result.run_dir, progress=False, log=lambda line: None)


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "gpu0"])
def test_an_unknown_device_is_refused_before_anything_is_written(tmp_path: Path, synthetic_npz: Path, device: str):
    with pytest.raises(DigitrecError, match=f"unknown device '{device}'; choose auto, cpu, cuda, cuda:N or mps"):
        _train(tmp_path, synthetic_npz, device=device)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("model", ["rows", "detector"])
def test_the_row_reader_and_the_detector_train_as_every_model_does_and_resume_exactly(tmp_path: Path, mnist_dir: Path, model: str):
    """Their synthetic rows and pages are drawn from the seed and the step alone: a run stopped and resumed draws the same."""
    npz = mnist_npz_file(tmp_path / "digits.npz", mnist_dir, 480)
    plan = plans.resolve(model, epochs=2, batch_size=32)
    whole = training.train(plan, data_spec=f"npz:{npz}", out=tmp_path / "whole", progress=False, log=lambda line: None)

    def interrupt_in_epoch_2(line: str) -> None:
        if line.startswith("epoch   2"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.train(plan, data_spec=f"npz:{npz}", out=tmp_path / "cut", progress=False, log=interrupt_in_epoch_2)
    resumed = training.resume(tmp_path / "cut", progress=False, log=lambda line: None)
    assert numbers(resumed.history) == numbers(whole.history)
    assert {"val_loss", "val_accuracy"} <= set(whole.history[-1])
    x = torch.rand(2, 1, 28, 40 if model == "rows" else 28)
    with torch.no_grad():
        assert torch.equal(checkpoint.load(resumed.final).model(x), checkpoint.load(whole.final).model(x))
    meta = checkpoint.read_metadata(whole.final)
    assert meta["kind"] == ("row reader" if model == "rows" else "digit detector")
    assert ("temperature" if model == "rows" else "threshold") in meta
    assert (whole.run_dir / rundir.EXPORT).is_file()


@pytest.mark.parametrize(("model", "field", "value"), [("rows", "outliers", 0.5), ("detector", "rotation", 10.0),
                                                       ("detector", "flagged_ones", 0.2), ("rows", "validation", 0.0)])
def test_a_recipe_field_the_row_reader_or_detector_would_ignore_is_refused_before_anything_is_written(
        tmp_path: Path, synthetic_npz: Path, model: str, field: str, value: float):
    with pytest.raises(DigitrecError) as refused:
        training.train(plans.resolve(model, **{field: value}), data_spec=f"npz:{synthetic_npz}", out=tmp_path / "run",
                       progress=False, log=lambda line: None)
    assert refused.value.source == field
    assert not (tmp_path / "run").exists()
