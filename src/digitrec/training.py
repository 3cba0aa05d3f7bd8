"""The training loop: whole data set as tensors, batches augmented in one call, a run directory
that never loses work (checkpoints and resumable state written atomically every epoch).

What a run trains comes from :mod:`digitrec.plans`; where its files go, from :mod:`digitrec.rundir`;
what a batch holds, its loss and what is measured after each epoch, from the model's task
(:mod:`digitrec.tasks`: digits, the row reader's rows, the digit detector's pages).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from digitrec import checkpoint, data, distributed, models, plans, rundir, tasks
from digitrec.distributed import ALONE, Group
from digitrec.errors import DigitrecError, TrainingInterrupted
from digitrec.inference import current_export, file_digest, resolve_device
from digitrec.plans import Plan
from digitrec.recipes import Recipe, epochs_text
from digitrec.tasks import Task


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


def _cos_between(start: float, end: float, share: float) -> float:
    """From ``start`` at share 0 to ``end`` at share 1 along half a cosine, as PyTorch's OneCycleLR anneals."""
    return end + (start - end) / 2 * (math.cos(math.pi * share) + 1)


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
            case "onecycle" if r.anneal == "cos":
                rising, share = self._cycle(step)
                lr = _cos_between(r.lr / 25, r.lr, share) if rising else _cos_between(r.lr, r.lr / 25 / 1e4, share)
            case "onecycle":  # linear rise from lr/25, linear fall to zero: airbench's triangle
                if progress < r.warmup:
                    lr = r.lr * (0.04 + 0.96 * progress / r.warmup)
                else:
                    lr = r.lr * (1 - progress) / (1 - r.warmup)
            case _:
                lr = r.lr
        return max(lr * self.plateau_scale, r.min_lr) if r.schedule == "plateau" else lr

    def momentum_at(self, step: int) -> float | None:
        """The momentum (Adam's beta1) at every step where the schedule cycles it (``anneal = "cos"``); None elsewhere."""
        if self.recipe.schedule != "onecycle" or self.recipe.anneal != "cos":
            return None
        rising, share = self._cycle(step)
        return _cos_between(0.95, 0.85, share) if rising else _cos_between(0.85, 0.95, share)

    def _cycle(self, step: int) -> tuple[bool, float]:
        """Whether ``step`` is in the rise of PyTorch's OneCycleLR, and how far along that phase (0-1), as it counts them."""
        peak, last = self.recipe.warmup * self.total - 1, self.total - 1
        if step <= peak:
            return True, step / peak if peak > 0 else 1.0
        return False, (step - peak) / (last - peak) if last > peak else 1.0

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
    resuming it changes nothing. A run stopped within an epoch (Ctrl-C) also holds that epoch's
    order, the steps it has taken and its running sums, so it continues at the next step. The
    generator is the same in every process of a group; the global random state (dropout) is each
    process's own, and all of them are saved (``rngs``, in rank order).
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
    step: int = 0  # steps taken in the epoch after ``epoch``
    order: torch.Tensor | None = None  # that epoch's order of the training digits, once drawn
    loss_sum: torch.Tensor | None = None  # that epoch's running sums
    correct: torch.Tensor | None = None
    seconds: float = 0.0  # the time that epoch has taken so far

    @property
    def model_for_use(self) -> nn.Module:
        """What is measured and saved: the weights' moving average where the recipe keeps one, else the weights."""
        return self.ema.model if self.ema is not None else self.net

    def save(self, path: Path, rngs: list[torch.Tensor]) -> None:
        checkpoint.save_state(path, {
            "epoch": self.epoch, "model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(), "ema": self.ema.model.state_dict() if self.ema else None,
            "rng": rngs[0], "rank_rngs": rngs[1:], "generator": self.generator.get_state(),
            "best_accuracy": self.best_accuracy, "since_best": self.since_best, "finished": self.finished,
            "step": self.step, "order": self.order, "loss_sum": self.loss_sum, "correct": self.correct, "seconds": self.seconds,
        })

    def restore(self, saved: dict[str, Any], rank: int = 0) -> None:
        self.net.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.schedule.load_state_dict(saved["schedule"])
        if self.ema is not None:
            self.ema.model.load_state_dict(saved["ema"])
        rngs = [saved["rng"], *saved.get("rank_rngs", [])]
        if rank < len(rngs):  # a process the run did not have keeps the state its rank seeded
            torch.set_rng_state(rngs[rank])
        self.generator.set_state(saved["generator"])
        self.epoch, self.best_accuracy, self.since_best = int(saved["epoch"]), saved["best_accuracy"], int(saved["since_best"])
        self.finished = bool(saved["finished"])
        self.step, self.order, self.seconds = int(saved.get("step", 0)), saved.get("order"), float(saved.get("seconds", 0.0))
        self.loss_sum, self.correct = saved.get("loss_sum"), saved.get("correct")

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
    sample = torch.randperm(len(digits), generator=torch.Generator().manual_seed(0))[: recipe.batch_size * (steps + 1)].numpy()
    task = tasks.build(plan.model, recipe, digits.subset(sample), 0, dev, measured=False)
    state = _fresh_state(plan.model, plan.arguments, recipe, math.ceil(task.examples / recipe.batch_size), 0, dev)
    quiet = _progress(steps + 1, "", False)

    def after(count: int) -> Callable[[], bool]:
        asked = itertools.count()  # asked before each step: stop once ``count`` more steps are taken
        return lambda: next(asked) >= count

    _train_epoch(state, recipe, task, 1, quiet, stop=after(1))  # warm-up
    started = time.perf_counter()
    _train_epoch(state, recipe, task, 1, quiet, stop=after(steps))
    return (time.perf_counter() - started) / steps * math.ceil(type(task).epoch_examples(training_count) / recipe.batch_size)


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
          tensorboard: str | Path | None = None, group: Group = ALONE, progress: bool = True,
          log: Callable[[str], None] = print) -> RunResult:
    """Train what ``plan`` says (the default preset if None) into a new run directory.

    ``data_spec`` replaces the plan's own data. ``watch`` names data (``mnist``) whose test part is
    measured after every epoch for the curves (``test_loss``, ``test_accuracy``), as Keras' ``fit(...,
    validation_data=test)`` did in seed 003's report: nothing reads it, so it chooses nothing (no
    checkpoint, schedule or early stop). ``tensorboard`` names a folder where each epoch's metrics are
    also logged for TensorBoard (``tensorboard`` must be installed). Everything is checked before the run directory is
    made: the device, the seed, the data and the folder itself, which must be new or empty (a run
    there is continued with :func:`resume`).

    ``group`` (:func:`digitrec.distributed.join` under torchrun) trains one model in several
    processes: each takes its share of every batch of ``recipe.batch_size`` digits, the global batch,
    so that one process and several train the same recipe. Only the group's leader writes files.
    Ctrl-C (or SIGTERM) stops training at the next step once everything is saved and raises
    :class:`TrainingInterrupted`; :func:`resume` continues it exactly.
    """
    plan = plan or plans.resolve()
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DigitrecError(f"must be a whole number >= 0, got {seed!r}", "seed")
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
    tasks.check(plan.model, plan.recipe, watch)
    digits = _training_data(config)
    if tensorboard:
        _summary_writer_class()  # installed, or a one-line error before anything is written
    if out is None and (launch := distributed.run_id()):
        out = rundir.launched_run_dir(plan.model, launch)
    if out is not None and distributed.restarted() and distributed.from_leader(group, lambda: _started(Path(out), config)):
        if group.leader:  # after one of its processes failed (--max-restarts)
            log(f"torchrun restarted the group: continuing {out}")
        return resume(out, device=device, group=group, progress=progress, log=log)

    def claim() -> tuple[Path, dict[str, Any]]:
        run_dir = rundir.claim(Path(out) if out else rundir.new_run_dir(plan.model))
        rundir.write_json(run_dir / rundir.CONFIG, config)
        return run_dir, config

    run_dir, config = distributed.from_leader(group, claim)
    return _run(run_dir, config, digits, dev, None, group=group, progress=progress, log=log)


def _started(run_dir: Path, config: dict[str, Any]) -> bool:
    """Whether ``run_dir`` holds the run ``config`` describes, begun before torchrun restarted the group."""
    if not rundir.holds_run(run_dir):
        return False
    begun = rundir.read_config(run_dir)
    asked = json.loads(json.dumps(config))  # as it reads back from config.json: tuples are lists
    return all(begun.get(key) == asked[key] for key in ("model", "arguments", "recipe", "data", "data_dir", "seed", "watch"))


def resume(run_dir: str | Path, *, epochs: int | None = None, device: str = "auto", group: Group = ALONE, progress: bool = True,
           log: Callable[[str], None] = print) -> RunResult:
    """Continue an interrupted run where it stopped (its last epoch, or the step Ctrl-C stopped it at); leave a finished one as it is.

    ``epochs`` trains a run further, to that many epochs in all (its schedule stretched to the new
    length); a run that stopped early stays stopped. Under torchrun (``group``), the leader reads
    the run directory and hands what it read to the others, so it need not be on a shared disk.
    """
    run_dir = Path(run_dir)
    dev = pick_device(device)
    config, saved = distributed.from_leader(group, lambda: _resumable(run_dir, epochs))
    recipe = Recipe.from_dict(config["recipe"])
    if saved and saved["finished"]:
        if group.leader:
            log(f"{run_dir}: already finished ({saved['epoch']}/{recipe.epochs} epochs); nothing to do")
            _export(run_dir, log)
        return RunResult(run_dir, rundir.read_history(run_dir) if group.leader else [])
    digits = _training_data(config)
    return _run(run_dir, config, digits, dev, saved, group=group, progress=progress, log=log)


def _resumable(run_dir: Path, epochs: int | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A run directory's configuration and saved state, checked; with ``epochs``, its recipe lengthened (and recorded)."""
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
    for stray in run_dir.glob(".*.tmp"):  # a write a kill cut short: the file it was replacing is whole
        stray.unlink(missing_ok=True)
    saved = _read_state(run_dir, recipe)
    done = saved["epoch"] if saved else 0
    if epochs is not None and epochs != recipe.epochs:
        if saved and saved["finished"] and done < recipe.epochs:
            raise DigitrecError(f"stopped early at epoch {done} (no validation gain): more epochs would not continue it", "epochs")
        if epochs < max(done, 1):
            raise DigitrecError(f"this run has trained {epochs_text(done)} already: epochs must be at least that", "epochs")
        config["recipe"] = replace(recipe, epochs=epochs).to_dict()
        if saved:
            saved["finished"] = False
        rundir.write_json(run_dir / rundir.CONFIG, config)  # the run's own record of what it trains: --resume alone finds it as it was
    return config, saved


def _run(run_dir: Path, config: dict[str, Any], digits: data.Digits, dev: torch.device, saved: dict[str, Any] | None, *,
         group: Group, progress: bool, log: Callable[[str], None]) -> RunResult:
    recipe = Recipe.from_dict(config["recipe"])
    if not group.leader:  # the leader speaks and writes for the group
        progress, log = False, _quiet
    watched = data.load(config["watch"], "test", config.get("data_dir")) if config.get("watch") else None
    task = tasks.build(config["model"], recipe, digits, config["seed"], dev, watch=watched)
    steps_per_epoch = math.ceil(task.examples / recipe.batch_size)
    state, history = _state_and_history(run_dir, config, recipe, steps_per_epoch, dev, saved, group, log)
    forward = distributed.wrap(state.net, group)
    writer = _EpochWriter(run_dir, config, task, group)
    elapsed = history[-1]["elapsed"] if history else 0.0
    with _StopRequests(log) as stop, writer:
        while state.epoch < recipe.epochs and not state.stopped_early(recipe):
            epoch = state.epoch + 1
            started = time.perf_counter() - state.seconds
            bar = _progress(steps_per_epoch, f"epoch {epoch}/{recipe.epochs}", progress, state.step)
            try:
                row = _train_epoch(state, recipe, task, epoch, bar, group=group, forward=forward,
                                   stop=lambda: distributed.anyone(stop.requested, group),
                                   check_replicas=os.environ.get("DIGITREC_CHECK_REPLICAS") == "1")
            except FloatingPointError as e:
                raise DigitrecError(f"training diverged: {e}; try a lower learning rate than {recipe.lr:g} (the epochs before are saved)",
                                    str(run_dir)) from None
            finally:
                bar.close()
            if row is None:  # asked to stop: keep every step taken, and say how to go on
                state.seconds = time.perf_counter() - started
                _save_state(state, run_dir, group)
                raise TrainingInterrupted(str(run_dir), epoch, state.step, steps_per_epoch, group.size, group.leader)
            improved, calibration = _measure(state, recipe, task, row, epoch, group)
            row["seconds"] = time.perf_counter() - started
            elapsed += row["seconds"]
            row["elapsed"] = elapsed
            history.append(row)
            log(_epoch_line(row, recipe.epochs))
            writer.write(history, state.model_for_use, improved, calibration)
            _save_state(state, run_dir, group)
            if state.stopped_early(recipe):
                log(f"early stopping: no validation gain for {epochs_text(state.since_best)}")

    if group.leader:
        if len(history) > 1:  # a one-point curve says nothing, and importing matplotlib takes most of a second
            from digitrec import plots

            plots.training_curves(history, run_dir / rundir.CURVES)
        _export(run_dir, log)
    state.finished = True
    _save_state(state, run_dir, group)
    return RunResult(run_dir, history)


def _state_and_history(run_dir: Path, config: dict[str, Any], recipe: Recipe, steps_per_epoch: int, dev: torch.device,
                       saved: dict[str, Any] | None, group: Group, log: Callable[[str], None]) -> tuple[RunState, list[dict[str, Any]]]:
    """The run's state, fresh or restored from ``saved`` (a stopped run's), and its history so far."""
    state = _fresh_state(config["model"], config["arguments"], recipe, steps_per_epoch, config["seed"], dev)
    if group.rank:  # each process its own dropout; the leader draws as a lone process does
        torch.manual_seed(config["seed"] + (group.rank << 32))
    if saved is None:
        return state, []
    try:
        state.restore(saved, group.rank)
    except (KeyError, RuntimeError, ValueError) as e:
        raise DigitrecError(f"training state does not fit this run ({str(e).splitlines()[0][:200]})", str(run_dir / rundir.STATE)) from None
    history = [row for row in rundir.read_history(run_dir) if row["epoch"] <= state.epoch] if group.leader else []
    where = f"epoch {state.epoch + 1}/{recipe.epochs}" + (f", step {state.step + 1}/{steps_per_epoch}" if state.step else "")
    log(f"resuming {run_dir} at {where}")
    processes = 1 + len(saved.get("rank_rngs", []))
    if processes != group.size:
        log(f"note: this run was saved by {processes} process(es) and continues in {group.size}: "
            "it continues, but not bit for bit as it would have")
    return state, history


def _measure(state: RunState, recipe: Recipe, task: Task, row: dict[str, Any], epoch: int, group: Group) -> tuple[bool, dict[str, Any]]:
    """An epoch's end: the weights' buffers agreed over the group, the task's held-out figures added to ``row``, the
    schedule and early stopping told; whether the monitored accuracy improved, and the model's calibration."""
    distributed.average_buffers(state.net, group)
    if state.ema is not None:
        distributed.average_buffers(state.ema.model, group)
    model_for_use = state.model_for_use
    calibration = task.measure(model_for_use, row, group)
    monitored = row.get("val_accuracy", row["train_accuracy"])
    improved = monitored > state.best_accuracy
    state.best_accuracy, state.since_best = (monitored, 0) if improved else (state.best_accuracy, state.since_best + 1)
    state.epoch, state.seconds = epoch, 0.0
    if group.leader and (state.stopped_early(recipe) or epoch == recipe.epochs):
        calibration = task.finish(model_for_use, calibration)
    if epoch > recipe.plain_epochs:  # a plain phase comes before the plateau schedule watches (Keras: a new callback)
        state.schedule.epoch_end(monitored)
    return improved, calibration


class _EpochWriter:
    """What the leader writes after each epoch: the history, TensorBoard's scalars, the final (best, kept) checkpoints."""

    def __init__(self, run_dir: Path, config: dict[str, Any], task: Task, group: Group):
        self.run_dir, self.config, self.leader = run_dir, config, group.leader
        self.meta = {"training": config, "data": task.trained_on, **task.meta}
        self.board = None
        if config.get("tensorboard") and group.leader:
            self.board = _summary_writer_class()(str(Path(config["tensorboard"]) / run_dir.name))

    def __enter__(self) -> _EpochWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.board is not None:
            self.board.close()

    def write(self, history: list[dict[str, Any]], model: nn.Module, improved: bool, calibration: dict[str, Any]) -> None:
        if not self.leader:
            return
        row, run_dir = history[-1], self.run_dir
        epoch, architecture, arguments = row["epoch"], self.config["model"], self.config["arguments"]
        rundir.write_history(run_dir, history)
        if self.board is not None:
            for key, value in row.items():
                if key != "epoch":
                    self.board.add_scalar(key, value, epoch)
            self.board.flush()
        meta = {"epoch": epoch, "metrics": row, **calibration, **self.meta}
        checkpoint.save(run_dir / rundir.FINAL, model, architecture, arguments, **meta)
        if self.config.get("keep_epochs"):
            checkpoint.save(run_dir / rundir.epoch_file(epoch), model, architecture, arguments, **meta)
        if improved:
            checkpoint.save(run_dir / rundir.BEST, model, architecture, arguments, **meta)


def _quiet(line: str) -> None:
    pass


def _save_state(state: RunState, run_dir: Path, group: Group) -> None:
    """Every process's random state gathered, the leader writes the run's state (all processes take part)."""
    rngs = distributed.gather_states(torch.get_rng_state(), group)
    if group.leader:
        state.save(run_dir / rundir.STATE, rngs)


class _StopRequests:
    """Ctrl-C (SIGINT) or SIGTERM during training asks it to stop at the next step, once its state is saved.

    A second Ctrl-C stops at once (what was saved at the last epoch or stop stays intact). Signal
    handlers can only be set in the main thread; elsewhere training runs to its end as before.
    """

    def __init__(self, log: Callable[[str], None]):
        self.requested = False
        self.log = log
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequests:
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self.previous[number] = signal.signal(number, self._ask)
        return self

    def _ask(self, number: int, frame: Any) -> None:
        if self.requested and number == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self.log("stopping after this step, once everything is saved (Ctrl-C again stops at once)")

    def __exit__(self, *exc: object) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)


def _summary_writer_class() -> type:
    """TensorBoard's SummaryWriter, imported only when asked for: the default needs nothing beyond the run directory."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise DigitrecError("needs the tensorboard package: pip install tensorboard (or 'digitrec[tensorboard]')",
                            "tensorboard") from None
    return SummaryWriter


def _export(run_dir: Path, log: Callable[[str], None]) -> None:
    """``final.onnx`` beside ``final.safetensors``: what ``predict`` and ``evaluate`` run fastest."""
    from digitrec.export import export_onnx

    if current_export(run_dir) is not None:
        return
    try:
        export_onnx(run_dir)
    except Exception as e:  # the run is complete without it: evaluate and predict fall back to PyTorch
        log(f"note: no ONNX export ({e.__class__.__name__}: {str(e).splitlines()[0][:200]}); PyTorch will run this model")


def _progress(total: int, description: str, enabled: bool, done: int = 0):
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc=description, unit="batch", leave=False, disable=not enabled or None,
                file=sys.stderr, dynamic_ncols=True)


ENSEMBLE_MEMBERS = 4
ENSEMBLE_PRESETS = ("default",)


def train_ensemble(presets: str | Sequence[str] = ENSEMBLE_PRESETS, members: int = ENSEMBLE_MEMBERS, *, out: str | Path | None = None,
                   seed: int = 0, data_spec: str = "mnist", data_dir: str | Path | None = None, device: str = "auto",
                   group: Group = ALONE, progress: bool = True, log: Callable[[str], None] = print) -> RunResult:
    """Train ``members`` models, member N from ``presets[N % len(presets)]`` with seed ``seed + N``, and combine them.

    Four default models by default: members of one recipe make much the same mistakes, so on MNIST
    a fifth or sixth adds under 0.01 points (BENCHMARKS.md) while each adds ~0.9 s to evaluating
    the 10,000 test digits on two CPU cores. Alternating with the ``elastic`` preset, whose members
    err on other digits, measured no better (BENCHMARKS.md), so it is an option, not the default.

    Each member is an ordinary run directory (``member-N``) inside ``out``, beside ``ensemble.json``
    (presets, seed, data). Running it again with the same ``out`` skips finished members, resumes
    an interrupted one and may ask for more or fewer members; the presets, seed and data cannot
    change. The combined model is ``out/final.safetensors`` with architecture ``ensemble``.

    Under torchrun (``group``), the members are shared out over the processes, each trained alone
    (member N by process N modulo their number); the leader combines them.
    """
    presets = [presets] if isinstance(presets, str) else list(presets)
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise DigitrecError(f"an ensemble needs at least one member, got {members}", "members")
    if not presets:
        raise DigitrecError("an ensemble needs at least one preset", "presets")
    try:
        chosen = [plans.resolve(recipe=name, data=data_spec) for name in presets]
    except DigitrecError as e:  # named as this function's argument (the CLI's --recipe), not plans.resolve's
        raise DigitrecError(e.reason, "presets" if e.source == "recipe" else e.source, e.place) from None
    pick_device(device)
    if out is None and (launch := distributed.run_id()):
        out = rundir.launched_run_dir("ensemble", launch)
    record = {"presets": presets, "seed": seed, "data": data_spec, "data_dir": str(data_dir) if data_dir else None}
    out = distributed.from_leader(group, lambda: _claim_ensemble(out, record))
    for index in range(group.rank, members, group.size):
        member_dir = rundir.member_dir(out, index)
        label = f"member {index + 1}/{members}"
        plan = chosen[index % len(chosen)]
        if rundir.holds_run(member_dir):
            log(f"{label}: {member_dir}")
            resume(member_dir, device=device, progress=progress, log=log)
        else:
            log(f"{label}: training the {presets[index % len(presets)]} preset with seed {seed + index}")
            train(plan, data_spec=data_spec, data_dir=data_dir, out=member_dir, seed=seed + index, device=device,
                  progress=progress, log=log)
    distributed.wait(group)
    if not group.leader:
        return RunResult(out, [])
    histories = [{**row, "member": index} for index in range(members) for row in rundir.read_history(rundir.member_dir(out, index))]
    _combine(out, members, {"presets": presets, "members": members, "seed": seed}, data_spec, data_dir, log)
    return RunResult(out, histories)


def _claim_ensemble(out: str | Path | None, record: dict[str, Any]) -> Path:
    """The ensemble's folder: a new one, or ``out`` made before with the same ``record`` (presets, seed, data)."""
    where = Path(out) if out else rundir.new_run_dir("ensemble")
    if rundir.holds_ensemble(where):
        made = rundir.read_json(where / rundir.ENSEMBLE, "an ensemble")
        for key, value in record.items():
            if made.get(key) != value:
                raise DigitrecError(f"this ensemble was made with {key} {made.get(key)!r}, not {value!r}; "
                                    "choose another --out for a different ensemble", str(where))
    else:
        rundir.claim(where, "ensemble")
        rundir.write_json(where / rundir.ENSEMBLE, {**record, "created": datetime.now().isoformat(timespec="seconds")})
    return where


def _combine(out: Path, members: int, training: dict[str, Any], data_spec: str, data_dir: str | Path | None,
             log: Callable[[str], None]) -> None:
    """The members' final models combined into ``out/final.safetensors`` (and its ONNX export), unless that is done."""
    finals = [rundir.member_dir(out, index) / rundir.FINAL for index in range(members)]
    digests = [file_digest(path) for path in finals]
    if (out / rundir.FINAL).is_file() and checkpoint.read_metadata(out / rundir.FINAL).get("members_sha256") == digests:
        log(f"{out}: already finished ({members} members); nothing to do")
        _export(out, log)
        return
    loaded_members = [checkpoint.load(path) for path in finals]
    specs = [{"architecture": m.architecture, "arguments": m.meta["arguments"]} for m in loaded_members]
    ensemble = models.Ensemble(specs)
    for target, source in zip(ensemble.members, loaded_members, strict=True):
        target.load_state_dict(source.model.state_dict())
    meta = loaded_members[0].meta
    temperature = tasks.training_temperature(ensemble, data.load(data_spec, "train", data_dir), torch.device("cpu"))
    checkpoint.save(out / rundir.FINAL, ensemble, "ensemble", {"members": specs}, epoch=meta.get("epoch"), temperature=temperature,
                    training=training, data=meta["data"], members_sha256=digests)
    _export(out, log)


def _set_momentum(group: dict[str, Any], momentum: float) -> None:
    """Set a parameter group's momentum: Adam's beta1, or SGD's and RMSprop's momentum (Adadelta has none)."""
    if "betas" in group:
        group["betas"] = (momentum, group["betas"][1])
    elif "momentum" in group:
        group["momentum"] = momentum


def _train_epoch(state: RunState, recipe: Recipe, task: Task, epoch: int, bar: Any, *, group: Group = ALONE,
                 forward: nn.Module | None = None, stop: Callable[[], bool] | None = None,
                 check_replicas: bool = False) -> dict[str, Any] | None:
    """One pass over the task's shuffled examples, from the step the state is at; the epoch's training metrics.

    In a group, every process draws the same order and the same random numbers for the whole global
    batch, then trains on its own share (:meth:`digitrec.tasks.Task.inputs`): the loss of a share is
    scaled so that the gradients DDP averages over the group (``forward``) are those of the whole
    batch. Returns None, the steps taken kept in ``state``, when ``stop()`` says so before a step.
    ``check_replicas`` compares every process's weights after every step (DIGITREC_CHECK_REPLICAS=1;
    slow, for tests and doubts).

    Raises FloatingPointError as soon as the loss is seen to be NaN or infinite: every 20 steps,
    where the progress bar reads it anyway (alone; a group checks all ranks' loss at the end), and at the end.
    """
    net, optimizer = state.net, state.optimizer
    forward = forward or net
    net.train()
    steps = math.ceil(task.examples / recipe.batch_size)
    if state.order is None:
        state.order = torch.randperm(task.examples, generator=state.generator)
        state.loss_sum, state.correct = torch.zeros(()), torch.zeros((), dtype=torch.long)
    order = state.order.to(task.device)
    loss_sum, correct = state.loss_sum.to(task.device), state.correct.to(task.device)
    for step in range(state.step, steps):
        if stop is not None and stop():
            state.step, state.loss_sum, state.correct = step, loss_sum.cpu(), correct.cpu()
            return None
        batch = order[step * recipe.batch_size : (step + 1) * recipe.batch_size]
        if len(batch) < group.size:  # too few examples left to give every process one: the group skips them
            continue
        mine = batch[group.share(len(batch))]
        x, target, shared = task.inputs(state.generator, batch, mine, epoch, group)
        so_far = (epoch - 1) * steps + step  # steps of the whole run before this one
        lr, momentum = state.schedule.at(so_far), state.schedule.momentum_at(so_far)
        for group_of_params in optimizer.param_groups:
            group_of_params["lr"] = lr
            if momentum is not None:
                _set_momentum(group_of_params, momentum)
        output = forward(x)
        loss = task.loss(output, target, net, len(batch), shared, group)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if check_replicas and not distributed.same_everywhere(net, group):
            raise DigitrecError(f"the processes' weights differ after step {step + 1} of epoch {epoch}", "DIGITREC_CHECK_REPLICAS")
        if state.ema is not None:
            state.ema.update(net)
        loss_sum += loss.detach() * len(batch)
        correct += task.hits(output, target).to(correct.device)
        bar.update()
        if step % 20 == 0:
            value = loss.item()
            if not math.isfinite(value) and group.size == 1:
                raise FloatingPointError(f"the loss became {value} in epoch {epoch}, step {step + 1}")
            bar.set_postfix(loss=f"{value:.4f}", acc=f"{float(correct) / ((step + 1) * len(mine)):.2%}")
    train_loss = float(distributed.total(loss_sum, group)) / group.size / task.examples
    train_accuracy = float(distributed.total(correct, group)) / task.examples
    state.step, state.order, state.loss_sum, state.correct = 0, None, None, None
    if not math.isfinite(train_loss):
        raise FloatingPointError(f"the loss became {train_loss} in epoch {epoch}")
    return {"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_accuracy, "lr": lr}


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    line = f"epoch {row['epoch']:>3}/{epochs}  train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.2%}"
    if "val_accuracy" in row:
        line += f"  val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.2%}"
    if "test_accuracy" in row:
        line += f"  (watched test loss {row['test_loss']:.4f} acc {row['test_accuracy']:.2%})"
    return line + f"  lr {row['lr']:.2e}  {row['seconds']:.1f}s"
