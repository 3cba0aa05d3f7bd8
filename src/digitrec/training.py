"""The training loop: whole data set as tensors, batches augmented in one call, a run directory
that never loses work (checkpoints and resumable state written atomically every epoch).

What a run trains comes from :mod:`digitrec.plans`; where its files go, from :mod:`digitrec.rundir`.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from digitrec import checkpoint, data, models, outliers, plans, rundir
from digitrec.augment import random_warp
from digitrec.errors import DigitrecError
from digitrec.inference import current_export, file_digest, predict_logits, resolve_device
from digitrec.metrics import Evaluation, fit_temperature
from digitrec.plans import Plan
from digitrec.recipes import Recipe


def pick_device(device: str = "auto") -> torch.device:
    return torch.device(resolve_device(device))


class SGD:
    """SGD with (Nesterov) momentum and L2 weight decay, computing exactly what ``torch.optim.SGD`` does.

    torch.optim's optimizers import all of ``torch._dynamo`` on first use (1.3-2 s on two cores) only
    to mark themselves as not compilable: a fifth of the fast recipe's ten seconds. The SGD recipes
    use this one instead; the other optimizers come from torch.optim.
    """

    def __init__(self, groups: list[dict[str, Any]], lr: float, momentum: float = 0.0, nesterov: bool = False):
        self.param_groups = [{**group, "params": list(group["params"]), "lr": lr, "momentum": momentum, "nesterov": nesterov}
                             for group in groups]
        self.momentum_buffers: list[list[torch.Tensor]] = [[] for _ in self.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for index, group in enumerate(self.param_groups):
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            update = [p.grad for p in params]
            if group["weight_decay"]:
                update = torch._foreach_add(update, params, alpha=group["weight_decay"])
            if group["momentum"]:
                buffers = self.momentum_buffers[index]
                if not buffers:  # the first step starts the average at the gradient, as torch does
                    buffers[:] = [u.clone() for u in update]
                else:
                    torch._foreach_mul_(buffers, group["momentum"])
                    torch._foreach_add_(buffers, update)
                update = torch._foreach_add(update, buffers, alpha=group["momentum"]) if group["nesterov"] else buffers
            torch._foreach_add_(params, update, alpha=-group["lr"])

    def state_dict(self) -> dict[str, Any]:
        return {"momentum_buffers": self.momentum_buffers}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.momentum_buffers = [list(buffers) for buffers in state["momentum_buffers"]]


def make_optimizer(recipe: Recipe, model: nn.Module) -> torch.optim.Optimizer | SGD:
    """The recipe's optimizer; weight decay only on weights, never on biases or norm scales."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    extra: dict[str, Any] = {} if recipe.eps is None else {"eps": recipe.eps}
    match recipe.optimizer:
        case "sgd":
            return SGD(groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov)
        case "adam":
            return torch.optim.Adam(groups, lr=recipe.lr, **extra)
        case "adamw":
            return torch.optim.AdamW(groups, lr=recipe.lr, **extra)
        case "rmsprop":
            return torch.optim.RMSprop(groups, lr=recipe.lr, alpha=recipe.rho or 0.99, momentum=recipe.momentum, **extra)
        case "adadelta":
            return torch.optim.Adadelta(groups, lr=recipe.lr, rho=recipe.rho or 0.9, **extra)
    raise ValueError(recipe.optimizer)


class LearningRate:
    """The learning rate at every step: a closed-form schedule times a plateau factor."""

    def __init__(self, recipe: Recipe, steps_per_epoch: int):
        self.recipe = recipe
        self.total = recipe.epochs * steps_per_epoch
        self.steps_per_epoch = steps_per_epoch
        self.plateau_scale = 1.0
        self.best = -math.inf
        self.wait = 0

    def at(self, step: int) -> float:
        r = self.recipe
        progress = step / max(1, self.total)
        match r.schedule:
            case "step":
                lr = r.lr * r.gamma ** (step // self.steps_per_epoch // r.step_size)
            case "cosine":
                lr = r.min_lr + (r.lr - r.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
            case "onecycle":  # linear rise from lr/25, linear fall to zero: airbench's triangle
                if progress < r.warmup:
                    lr = r.lr * (0.04 + 0.96 * progress / r.warmup)
                else:
                    lr = r.lr * (1 - progress) / (1 - r.warmup)
            case _:
                lr = r.lr
        return max(lr * self.plateau_scale, r.min_lr) if r.schedule == "plateau" else lr

    def epoch_end(self, monitored: float) -> None:
        """Keras' ReduceLROnPlateau on accuracy: min_delta 1e-4, reduce once ``patience`` epochs pass."""
        if self.recipe.schedule != "plateau":
            return
        if monitored > self.best + 1e-4:
            self.best, self.wait = monitored, 0
            return
        self.wait += 1
        if self.wait >= self.recipe.plateau_patience:
            self.plateau_scale *= self.recipe.plateau_factor
            self.wait = 0

    def state_dict(self) -> dict[str, float]:
        return {"plateau_scale": self.plateau_scale, "best": self.best, "wait": self.wait}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.plateau_scale, self.best, self.wait = state["plateau_scale"], state["best"], int(state["wait"])


class EMA:
    """An exponential moving average of the weights; buffers (BatchNorm statistics) are copied."""

    def __init__(self, model: nn.Module, decay: float):
        import copy

        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        torch._foreach_lerp_(list(self.model.parameters()), list(model.parameters()), 1 - self.decay)
        for mine, theirs in zip(self.model.buffers(), model.buffers(), strict=True):
            mine.copy_(theirs)


@dataclass
class RunResult:
    run_dir: Path
    history: list[dict[str, Any]]

    @property
    def final(self) -> Path:
        return self.run_dir / rundir.FINAL


@dataclass
class RunState:
    """Everything ``--resume`` needs, saved and restored as one value, so a run continues exactly where it stopped.

    ``finished`` marks a run that ran its course (every epoch, or stopped early) and was exported:
    resuming it changes nothing.
    """

    net: nn.Module
    optimizer: torch.optim.Optimizer | SGD
    schedule: LearningRate
    ema: EMA | None
    generator: torch.Generator
    epoch: int = 0  # the last completed epoch
    best_accuracy: float = -1.0
    since_best: int = 0
    finished: bool = False

    def save(self, path: Path) -> None:
        checkpoint.save_state(path, {
            "epoch": self.epoch, "model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(), "ema": self.ema.model.state_dict() if self.ema else None,
            "rng": torch.get_rng_state(), "generator": self.generator.get_state(),
            "best_accuracy": self.best_accuracy, "since_best": self.since_best, "finished": self.finished,
        })

    def restore(self, saved: dict[str, Any]) -> None:
        self.net.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.schedule.load_state_dict(saved["schedule"])
        if self.ema is not None:
            self.ema.model.load_state_dict(saved["ema"])
        torch.set_rng_state(saved["rng"])
        self.generator.set_state(saved["generator"])
        self.epoch, self.best_accuracy, self.since_best = int(saved["epoch"]), saved["best_accuracy"], int(saved["since_best"])
        self.finished = bool(saved["finished"])

    def stopped_early(self, recipe: Recipe) -> bool:
        return _patience_ran_out(recipe, self.since_best)


def _patience_ran_out(recipe: Recipe, since_best: int) -> bool:
    return bool(recipe.early_stopping) and since_best >= recipe.early_stopping


def _read_state(run_dir: Path, recipe: Recipe) -> dict[str, Any] | None:
    """The saved state of a run, if it has completed an epoch; states written before the finished mark get one."""
    if not (run_dir / rundir.STATE).exists():
        return None
    saved = checkpoint.load_state(run_dir / rundir.STATE)
    missing = [key for key in ("epoch", "model", "optimizer", "schedule", "rng", "generator", "best_accuracy", "since_best")
               if key not in saved]
    if missing:
        raise DigitrecError(f"damaged training state (no {missing[0]!r} in it)", str(run_dir / rundir.STATE))
    if "finished" not in saved:
        saved["finished"] = saved["epoch"] >= recipe.epochs or _patience_ran_out(recipe, saved["since_best"])
    return saved


def progress(run_dir: str | Path) -> tuple[int, bool]:
    """How many epochs a run directory has completed, and whether it is finished (resuming it would change nothing)."""
    run_dir = Path(run_dir)
    recipe = Recipe.from_dict(rundir.read_config(run_dir)["recipe"])
    saved = _read_state(run_dir, recipe)
    return (int(saved["epoch"]), bool(saved["finished"])) if saved else (0, False)


def seconds_per_epoch(plan: Plan, data_spec: str = "mnist", data_dir: str | Path | None = None, steps: int = 4,
                      device: str = "auto") -> float:
    """An epoch's training time on this machine, from ``steps`` real steps of the plan's recipe after one to warm up.

    The steps are those of :func:`train` (augmentation, outliers, the optimizer) on the data's own
    digits; validation, which takes a few percent of an epoch, is left out.
    """
    dev = pick_device(device)
    digits = data.load(data_spec, "train", data_dir)
    recipe = plan.recipe
    training_count = len(data.holdout_split(digits.labels, recipe.validation, 0, recipe.split)[0]) if recipe.validation else len(digits)
    state = _fresh_state(plan.model, plan.arguments, recipe, steps + 1, 0, dev)
    sample = torch.randperm(len(digits), generator=torch.Generator().manual_seed(0))[: recipe.batch_size * (steps + 1)].numpy()
    images, labels = torch.tensor(digits.images[sample], device=dev), torch.tensor(digits.labels[sample], device=dev)
    strangers = outliers.bank(len(images) // OUTLIER_SHARE, 0).to(dev) if recipe.outliers else None
    quiet = _progress(steps + 1, "", False)
    _train_epoch(state, recipe, images[: recipe.batch_size], labels[: recipe.batch_size], 1, quiet, strangers)  # warm-up
    started = time.perf_counter()
    _train_epoch(state, recipe, images[recipe.batch_size :], labels[recipe.batch_size :], 1, quiet, strangers)
    return (time.perf_counter() - started) / steps * math.ceil(training_count / recipe.batch_size)


def _fresh_state(model: str, arguments: dict[str, Any], recipe: Recipe, steps_per_epoch: int, seed: int, dev: torch.device) -> RunState:
    """A new model, its optimizer, schedule, EMA and data generator, all seeded: what epoch 1 starts from."""
    torch.manual_seed(seed)
    net = models.create(model, **arguments).to(dev, memory_format=torch.channels_last)
    return RunState(net, make_optimizer(recipe, net), LearningRate(recipe, steps_per_epoch), EMA(net, recipe.ema) if recipe.ema else None,
                    torch.Generator().manual_seed(seed))


def _training_data(config: dict[str, Any]) -> data.Digits:
    digits = data.load(config["data"], "train", config.get("data_dir"))
    if not digits.labelled:
        raise DigitrecError("training data has no labels", digits.name)
    return digits


def train(plan: Plan | None = None, *, data_spec: str | None = None, data_dir: str | Path | None = None, out: str | Path | None = None,
          seed: int = 0, device: str = "auto", keep_epochs: bool = False, watch: str | None = None,
          tensorboard: str | Path | None = None, progress: bool = True, log: Callable[[str], None] = print) -> RunResult:
    """Train what ``plan`` says (the default preset if None) into a new run directory.

    ``data_spec`` replaces the plan's own data. ``watch`` names data (``mnist``) whose test part is
    measured after every epoch for the curves (``test_loss``, ``test_accuracy``), as Keras' ``fit(...,
    validation_data=test)`` did in seed 003's report: nothing reads it, so it chooses nothing (no
    checkpoint, schedule or early stop). ``tensorboard`` names a folder where each epoch's metrics are
    also logged for TensorBoard (``tensorboard`` must be installed). Everything is checked before the run directory is
    made: the device, the seed, the data and the folder itself, which must be new or empty (a run
    there is continued with :func:`resume`).
    """
    plan = plan or plans.resolve()
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DigitrecError(f"must be a whole number >= 0, got {seed!r}", "--seed")
    dev = pick_device(device)
    config = {
        "model": plan.model,
        "arguments": plan.arguments,
        "recipe": plan.recipe.to_dict(),
        "data": data_spec or plan.data,
        "data_dir": str(data_dir) if data_dir else None,
        "seed": seed,
        "keep_epochs": keep_epochs,
        "watch": watch,
        "tensorboard": str(tensorboard) if tensorboard else None,
        "created": datetime.now().isoformat(timespec="seconds"),
        "versions": checkpoint.library_versions(),
    }
    digits = _training_data(config)
    if tensorboard:
        _summary_writer_class()  # installed, or a one-line error before anything is written
    run_dir = rundir.claim(Path(out) if out else rundir.new_run_dir(plan.model))
    rundir.write_json(run_dir / rundir.CONFIG, config)
    return _run(run_dir, config, digits, dev, None, progress=progress, log=log)


def resume(run_dir: str | Path, *, epochs: int | None = None, device: str = "auto", progress: bool = True,
           log: Callable[[str], None] = print) -> RunResult:
    """Continue an interrupted run from its last completed epoch; a finished run is left as it is.

    ``epochs`` trains a run further, to that many epochs in all (its schedule stretched to the new
    length); a run that stopped early stays stopped.
    """
    run_dir = Path(run_dir)
    config = rundir.read_config(run_dir)
    source = str(run_dir / rundir.CONFIG)
    missing = [key for key in ("model", "arguments", "recipe", "data", "seed") if key not in config]
    if missing:
        raise DigitrecError(f"no {missing[0]!r} in it: not a digitrec run's configuration", source)
    if config["model"] not in models.REGISTRY or models.REGISTRY[config["model"]].composite:
        raise DigitrecError(f"unknown model {config['model']!r}; `digitrec models` lists them", source)
    try:
        recipe = Recipe.from_dict(config["recipe"])
    except DigitrecError as e:
        raise DigitrecError(f"recipe field {e.source}: {e.reason}", source) from None
    except TypeError as e:
        raise DigitrecError(f"unreadable recipe ({e})", source) from None
    saved = _read_state(run_dir, recipe)
    done = saved["epoch"] if saved else 0
    if epochs is not None and epochs != recipe.epochs:
        if saved and saved["finished"] and done < recipe.epochs:
            raise DigitrecError(f"stopped early at epoch {done} (no validation gain): more epochs would not continue it", "--epochs")
        if epochs < max(done, 1):
            raise DigitrecError(f"this run has trained {done} epochs already; --epochs must be at least that", "--epochs")
        recipe = replace(recipe, epochs=epochs)
        config["recipe"] = recipe.to_dict()
        if saved:
            saved["finished"] = False
    dev = pick_device(device)
    if saved and saved["finished"]:
        log(f"{run_dir}: already finished ({done}/{recipe.epochs} epochs); nothing to do")
        _export(run_dir, log)
        return RunResult(run_dir, rundir.read_history(run_dir))
    digits = _training_data(config)
    if epochs is not None:  # the run's own record of what it trains: --resume alone finds it as it was
        rundir.write_json(run_dir / rundir.CONFIG, config)
    return _run(run_dir, config, digits, dev, saved, progress=progress, log=log)


def _run(run_dir: Path, config: dict[str, Any], digits: data.Digits, dev: torch.device, saved: dict[str, Any] | None, *,
         progress: bool, log: Callable[[str], None]) -> RunResult:
    recipe = Recipe.from_dict(config["recipe"])
    if recipe.validation:
        train_index, val_index = data.holdout_split(digits.labels, recipe.validation, config["seed"], recipe.split)
        train_set, val_set = digits.subset(train_index), digits.subset(val_index, f"{digits.name} (validation)")
    else:
        train_set, val_set = digits, None
    watched = data.load(config["watch"], "test", config.get("data_dir")) if config.get("watch") else None

    steps_per_epoch = math.ceil(len(train_set) / recipe.batch_size)
    state = _fresh_state(config["model"], config["arguments"], recipe, steps_per_epoch, config["seed"], dev)
    net = state.net
    history: list[dict[str, Any]] = []
    if saved is not None:
        try:
            state.restore(saved)
        except (KeyError, RuntimeError, ValueError) as e:
            raise DigitrecError(f"training state does not fit this run ({str(e).splitlines()[0][:200]})",
                                str(run_dir / rundir.STATE)) from None
        history = [row for row in rundir.read_history(run_dir) if row["epoch"] <= state.epoch]
        log(f"resuming {run_dir} at epoch {state.epoch + 1}/{recipe.epochs}")

    images = torch.tensor(train_set.images, device=dev)
    labels = torch.tensor(train_set.labels, device=dev)
    strangers = None
    if recipe.outliers:  # drawn from the run's seed alone, so a resumed run has the same
        strangers = outliers.bank(len(images) // OUTLIER_SHARE, config["seed"]).to(dev)
    model, arguments = config["model"], config["arguments"]
    meta = {"training": config, "data": {"name": digits.name, "checksum": digits.checksum, "count": len(train_set)}}
    elapsed = history[-1]["elapsed"] if history else 0.0
    board = _summary_writer_class()(str(Path(config["tensorboard"]) / run_dir.name)) if config.get("tensorboard") else None
    while state.epoch < recipe.epochs and not state.stopped_early(recipe):
        epoch = state.epoch + 1
        started = time.perf_counter()
        bar = _progress(steps_per_epoch, f"epoch {epoch}/{recipe.epochs}", progress)
        try:
            row = _train_epoch(state, recipe, images, labels, epoch, bar, strangers)
        except FloatingPointError as e:
            raise DigitrecError(f"training diverged: {e}; try a lower learning rate than {recipe.lr:g} (the epochs before are saved)",
                                str(run_dir)) from None
        finally:
            bar.close()
        model_for_use = state.ema.model if state.ema is not None else net
        temperature = None
        if val_set is not None:
            val_logits = predict_logits(model_for_use, val_set.images, device=str(dev)).numpy()
            result = Evaluation.from_logits(val_logits, val_set.labels)
            row.update(val_loss=result.loss, val_accuracy=result.accuracy)
            temperature = fit_temperature(val_logits, val_set.labels)
        if watched is not None:  # for the curves only: nothing below reads it
            result = Evaluation.from_logits(predict_logits(model_for_use, watched.images, device=str(dev)).numpy(), watched.labels)
            row.update(test_loss=result.loss, test_accuracy=result.accuracy)
        monitored = row.get("val_accuracy", row["train_accuracy"])
        improved = monitored > state.best_accuracy
        state.best_accuracy, state.since_best = (monitored, 0) if improved else (state.best_accuracy, state.since_best + 1)
        state.epoch = epoch
        if temperature is None and (state.stopped_early(recipe) or epoch == recipe.epochs):
            temperature = _training_temperature(model_for_use, train_set, dev)
        row["seconds"] = time.perf_counter() - started
        elapsed += row["seconds"]
        row["elapsed"] = elapsed
        history.append(row)
        if epoch > recipe.plain_epochs:  # a plain phase comes before the plateau schedule watches (Keras: a new callback)
            state.schedule.epoch_end(monitored)
        log(_epoch_line(row, recipe.epochs))

        rundir.write_history(run_dir, history)
        if board is not None:
            for key, value in row.items():
                if key != "epoch":
                    board.add_scalar(key, value, epoch)
            board.flush()
        saved_meta = {"epoch": epoch, "metrics": row, "temperature": temperature, **meta}
        checkpoint.save(run_dir / rundir.FINAL, model_for_use, model, arguments, **saved_meta)
        if config.get("keep_epochs"):
            checkpoint.save(run_dir / rundir.epoch_file(epoch), model_for_use, model, arguments, **saved_meta)
        if improved:
            checkpoint.save(run_dir / rundir.BEST, model_for_use, model, arguments, **saved_meta)
        state.save(run_dir / rundir.STATE)
        if state.stopped_early(recipe):
            log(f"early stopping: no validation gain for {state.since_best} epochs")

    if board is not None:
        board.close()
    if len(history) > 1:  # a one-point curve says nothing, and importing matplotlib takes most of a second
        from digitrec import plots

        plots.training_curves(history, run_dir / rundir.CURVES)
    _export(run_dir, log)
    state.finished = True
    state.save(run_dir / rundir.STATE)
    return RunResult(run_dir, history)


def _summary_writer_class() -> type:
    """TensorBoard's SummaryWriter, imported only when asked for: the default needs nothing beyond the run directory."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise DigitrecError("needs the tensorboard package: pip install tensorboard (or 'digitrec[tensorboard]')",
                            "--tensorboard") from None
    return SummaryWriter


def _training_temperature(model: nn.Module, train_set: data.Digits, device: torch.device) -> float:
    """Calibrate on up to 10,000 training digits, unaugmented, when there is no held-out split.

    Measured on the default model: T = 0.41 from training digits against 0.44 that the test set
    itself would give, and the calibration error on the test set falls from 9.4 % to 0.2 %.
    """
    sample = np.random.default_rng(0).permutation(len(train_set))[:10_000]
    logits = predict_logits(model, train_set.images[sample], device=str(device)).numpy()
    return fit_temperature(logits, train_set.labels[sample])


def _export(run_dir: Path, log: Callable[[str], None]) -> None:
    """``final.onnx`` beside ``final.safetensors``: what ``predict`` and ``evaluate`` run fastest."""
    from digitrec.export import export_onnx

    if current_export(run_dir) is not None:
        return
    try:
        export_onnx(run_dir)
    except Exception as e:  # the run is complete without it: evaluate and predict fall back to PyTorch
        log(f"note: no ONNX export ({e.__class__.__name__}: {str(e).splitlines()[0][:200]}); PyTorch will run this model")


def _progress(total: int, description: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="batch", leave=False, disable=not enabled or None,
                file=sys.stderr, dynamic_ncols=True)


ENSEMBLE_MEMBERS = 4
OUTLIER_SHARE = 4  # outlier exposure adds one non-digit for every this many digits
ENSEMBLE_PRESETS = ("default",)


def train_ensemble(presets: str | Sequence[str] = ENSEMBLE_PRESETS, members: int = ENSEMBLE_MEMBERS, *, out: str | Path | None = None,
                   seed: int = 0, data_spec: str = "mnist", data_dir: str | Path | None = None, device: str = "auto",
                   progress: bool = True, log: Callable[[str], None] = print) -> RunResult:
    """Train ``members`` models, member N from ``presets[N % len(presets)]`` with seed ``seed + N``, and combine them.

    Four default models by default: members of one recipe make much the same mistakes, so on MNIST
    a fifth or sixth adds under 0.01 points (BENCHMARKS.md) while each adds ~0.9 s to evaluating
    the 10,000 test digits on two CPU cores. Alternating with the ``elastic`` preset, whose members
    err on other digits, measured no better (BENCHMARKS.md), so it is an option, not the default.

    Each member is an ordinary run directory (``member-N``) inside ``out``, beside ``ensemble.json``
    (presets, seed, data). Running it again with the same ``out`` skips finished members, resumes
    an interrupted one and may ask for more or fewer members; the presets, seed and data cannot
    change. The combined model is ``out/final.safetensors`` with architecture ``ensemble``.
    """
    presets = [presets] if isinstance(presets, str) else list(presets)
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise DigitrecError(f"an ensemble needs at least one member, got {members}", "--members")
    if not presets:
        raise DigitrecError("an ensemble needs at least one preset", "--recipe")
    chosen = [plans.resolve(recipe=name, data=data_spec) for name in presets]
    pick_device(device)
    out = Path(out) if out else rundir.new_run_dir("ensemble")
    record = {"presets": presets, "seed": seed, "data": data_spec, "data_dir": str(data_dir) if data_dir else None}
    if rundir.holds_ensemble(out):
        made = rundir.read_json(out / rundir.ENSEMBLE, "an ensemble")
        for key, value in record.items():
            if made.get(key) != value:
                raise DigitrecError(f"this ensemble was made with {key} {made.get(key)!r}, not {value!r}; "
                                    "choose another --out for a different ensemble", str(out))
    else:
        rundir.claim(out, "ensemble")
        rundir.write_json(out / rundir.ENSEMBLE, {**record, "created": datetime.now().isoformat(timespec="seconds")})
    histories: list[dict[str, Any]] = []
    finals: list[Path] = []
    for index in range(members):
        member_dir = rundir.member_dir(out, index)
        label = f"member {index + 1}/{members}"
        plan = chosen[index % len(chosen)]
        if rundir.holds_run(member_dir):
            log(f"{label}: {member_dir}")
            result = resume(member_dir, device=device, progress=progress, log=log)
        else:
            log(f"{label}: training the {presets[index % len(presets)]} preset with seed {seed + index}")
            result = train(plan, data_spec=data_spec, data_dir=data_dir, out=member_dir, seed=seed + index, device=device,
                           progress=progress, log=log)
        histories += [{**row, "member": index} for row in result.history]
        finals.append(result.final)
    digests = [file_digest(path) for path in finals]
    if (out / rundir.FINAL).is_file() and checkpoint.read_metadata(out / rundir.FINAL).get("members_sha256") == digests:
        log(f"{out}: already finished ({members} members); nothing to do")
        _export(out, log)
        return RunResult(out, histories)
    loaded_members = [checkpoint.load(path) for path in finals]
    specs = [{"architecture": m.architecture, "arguments": m.meta["arguments"]} for m in loaded_members]
    ensemble = models.Ensemble(specs)
    for target, source in zip(ensemble.members, loaded_members, strict=True):
        target.load_state_dict(source.model.state_dict())
    meta = loaded_members[0].meta
    temperature = _training_temperature(ensemble, data.load(data_spec, "train", data_dir), torch.device("cpu"))
    checkpoint.save(out / rundir.FINAL, ensemble, "ensemble", {"members": specs}, epoch=meta.get("epoch"), temperature=temperature,
                    training={"presets": presets, "members": members, "seed": seed}, data=meta["data"], members_sha256=digests)
    _export(out, log)
    return RunResult(out, histories)


def _train_epoch(state: RunState, recipe: Recipe, images: torch.Tensor, labels: torch.Tensor, epoch: int, bar: Any,
                 strangers: torch.Tensor | None = None) -> dict[str, Any]:
    """One pass over the shuffled training set; returns the epoch's training metrics.

    With outlier exposure, each batch also holds a quarter as many ``strangers`` (non-digits),
    whose loss is their cross-entropy to the uniform distribution, weighted by ``recipe.outliers``.

    Raises FloatingPointError as soon as the loss is seen to be NaN or infinite: every 20 steps,
    where the progress bar reads it anyway, and at the end.
    """
    net, optimizer = state.net, state.optimizer
    net.train()
    steps = math.ceil(len(images) / recipe.batch_size)
    order = torch.randperm(len(images), generator=state.generator).to(images.device)
    loss_sum = torch.zeros((), device=images.device)
    correct = torch.zeros((), device=images.device, dtype=torch.long)
    for step in range(steps):
        batch = order[step * recipe.batch_size : (step + 1) * recipe.batch_size]
        x = images[batch]
        if strangers is not None:
            x = torch.cat([x, strangers[torch.randint(len(strangers), (len(batch) // OUTLIER_SHARE,), generator=state.generator)]])
        x = x.unsqueeze(1).float().div_(255)
        if recipe.augment.active and epoch > recipe.plain_epochs:
            x = random_warp(x, recipe.augment, state.generator)
        x = x.contiguous(memory_format=torch.channels_last)
        y = labels[batch]
        lr = state.schedule.at((epoch - 1) * steps + step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        logits = net(x)
        logits, stranger_logits = logits[: len(batch)], logits[len(batch) :]
        loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing) + models.l2_penalty(net)
        if len(stranger_logits):
            loss = loss + recipe.outliers * (stranger_logits.logsumexp(1) - stranger_logits.mean(1)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if state.ema is not None:
            state.ema.update(net)
        loss_sum += loss.detach() * len(batch)
        correct += (logits.argmax(1) == y).sum()
        bar.update()
        if step % 20 == 0:
            value = loss.item()
            if not math.isfinite(value):
                raise FloatingPointError(f"the loss became {value} in epoch {epoch}, step {step + 1}")
            bar.set_postfix(loss=f"{value:.4f}", acc=f"{float(correct) / ((step + 1) * recipe.batch_size):.2%}")
    train_loss = float(loss_sum) / len(images)
    if not math.isfinite(train_loss):
        raise FloatingPointError(f"the loss became {train_loss} in epoch {epoch}")
    return {"epoch": epoch, "train_loss": train_loss, "train_accuracy": float(correct) / len(images), "lr": lr}


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    line = f"epoch {row['epoch']:>3}/{epochs}  train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.2%}"
    if "val_accuracy" in row:
        line += f"  val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.2%}"
    if "test_accuracy" in row:
        line += f"  (watched test loss {row['test_loss']:.4f} acc {row['test_accuracy']:.2%})"
    return line + f"  lr {row['lr']:.2e}  {row['seconds']:.1f}s"
