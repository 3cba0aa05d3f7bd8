"""The training loop: whole data set as tensors, batches augmented in one call, a run directory
that never loses work (checkpoints and resumable state written atomically every epoch).

A run directory holds ``config.json`` (the resolved configuration), ``metrics.jsonl`` (one line
per epoch), ``final.safetensors`` and ``best.safetensors`` (best validation accuracy),
``state.safetensors`` (optimizer, schedule and random state for ``--resume``), ``curves.png`` and,
with ``keep_epochs``, ``epoch-NNN.safetensors`` for every epoch.
"""

from __future__ import annotations

import json
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

from digitrec import checkpoint, data, models
from digitrec.augment import random_warp
from digitrec.errors import DigitrecError
from digitrec.inference import current_export, predict_logits
from digitrec.metrics import HISTORY, Evaluation, fit_temperature, read_history
from digitrec.recipes import Recipe

CONFIG, FINAL, BEST, STATE = "config.json", "final.safetensors", "best.safetensors", "state.safetensors"


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DigitrecError("CUDA was asked for but no CUDA device is available", "--device")
    return torch.device(device)


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
        return self.run_dir / FINAL


def new_run_dir(model: str, root: Path = Path("runs")) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate, n = root / f"{model}-{stamp}", 1
    while candidate.exists():
        n += 1
        candidate = root / f"{model}-{stamp}-{n}"
    return candidate


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    data.atomic_write(path, "".join(json.dumps(row) + "\n" for row in rows).encode())


def _progress(total: int, description: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="batch", leave=False, disable=not enabled or None,
                file=sys.stderr, dynamic_ncols=True)


def train(
    model: str = models.DEFAULT_MODEL,
    recipe: Recipe | None = None,
    *,
    arguments: dict[str, Any] | None = None,
    data_spec: str = "mnist",
    data_dir: str | Path | None = None,
    out: str | Path | None = None,
    seed: int = 0,
    device: str = "auto",
    keep_epochs: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> RunResult:
    """Train ``model`` with ``recipe`` (its registered default if None) into a new run directory."""
    if model not in models.REGISTRY:
        raise DigitrecError(f"unknown model {model!r}; `digitrec models` lists them", "--model")
    recipe = recipe or models.REGISTRY[model].recipe
    run_dir = Path(out) if out else new_run_dir(model)
    if (run_dir / CONFIG).exists():
        raise DigitrecError("already holds a run; continue it with --resume or choose another --out", str(run_dir))
    config = {
        "model": model,
        "arguments": arguments or {},
        "recipe": recipe.to_dict(),
        "data": data_spec,
        "data_dir": str(data_dir) if data_dir else None,
        "seed": seed,
        "keep_epochs": keep_epochs,
        "created": datetime.now().isoformat(timespec="seconds"),
        "versions": checkpoint.library_versions(),
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    data.atomic_write(run_dir / CONFIG, (json.dumps(config, indent=2) + "\n").encode())
    return _run(run_dir, config, device=device, progress=progress, log=log)


def resume(run_dir: str | Path, *, device: str = "auto", progress: bool = True, log: Callable[[str], None] = print) -> RunResult:
    """Continue an interrupted run from its last completed epoch."""
    run_dir = Path(run_dir)
    try:
        config = json.loads((run_dir / CONFIG).read_text())
    except (OSError, json.JSONDecodeError):
        raise DigitrecError(f"not a run directory (no readable {CONFIG})", str(run_dir)) from None
    state = checkpoint.load_state(run_dir / STATE) if (run_dir / STATE).exists() else None
    return _run(run_dir, config, device=device, progress=progress, log=log, state=state)


def _run(run_dir: Path, config: dict[str, Any], *, device: str, progress: bool, log: Callable[[str], None],
         state: dict[str, Any] | None = None) -> RunResult:
    recipe = Recipe.from_dict(config["recipe"])
    dev = pick_device(device)
    digits = data.load(config["data"], "train", config.get("data_dir"))
    if not digits.labelled:
        raise DigitrecError("training data has no labels", digits.name)
    if recipe.validation:
        train_index, val_index = data.stratified_split(digits.labels, recipe.validation, config["seed"])
        train_set, val_set = digits.subset(train_index), digits.subset(val_index, f"{digits.name} (validation)")
    else:
        train_set, val_set = digits, None

    torch.manual_seed(config["seed"])
    net = models.create(config["model"], **config["arguments"]).to(dev, memory_format=torch.channels_last)
    optimizer = make_optimizer(recipe, net)
    steps_per_epoch = math.ceil(len(train_set) / recipe.batch_size)
    schedule = LearningRate(recipe, steps_per_epoch)
    ema = EMA(net, recipe.ema) if recipe.ema else None
    generator = torch.Generator().manual_seed(config["seed"])
    history: list[dict[str, Any]] = []
    best_accuracy, since_best, start_epoch = -1.0, 0, 1
    if state is not None:
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        if ema is not None:
            ema.model.load_state_dict(state["ema"])
        torch.set_rng_state(state["rng"])
        generator.set_state(state["generator"])
        best_accuracy, since_best, start_epoch = state["best_accuracy"], state["since_best"], state["epoch"] + 1
        history = [row for row in read_history(run_dir) if row["epoch"] < start_epoch]
        log(f"resuming {run_dir} at epoch {start_epoch}/{recipe.epochs}")

    images = torch.tensor(train_set.images, device=dev)
    labels = torch.tensor(train_set.labels, device=dev)
    meta = {"training": config, "data": {"name": digits.name, "checksum": digits.checksum, "count": len(train_set)}}
    elapsed = history[-1]["elapsed"] if history else 0.0
    for epoch in range(start_epoch, recipe.epochs + 1):
        started = time.perf_counter()
        bar = _progress(steps_per_epoch, f"epoch {epoch}/{recipe.epochs}", progress)
        row = _train_epoch(net, optimizer, schedule, ema, recipe, images, labels, generator, epoch, bar)
        bar.close()
        model_for_use = ema.model if ema is not None else net
        temperature = None
        if val_set is not None:
            val_logits = predict_logits(model_for_use, val_set.images, device=str(dev)).numpy()
            result = Evaluation.from_logits(val_logits, val_set.labels)
            row.update(val_loss=result.loss, val_accuracy=result.accuracy)
            temperature = fit_temperature(val_logits, val_set.labels)
        monitored = row.get("val_accuracy", row["train_accuracy"])
        improved = monitored > best_accuracy
        best_accuracy, since_best = (monitored, 0) if improved else (best_accuracy, since_best + 1)
        stopping = bool(recipe.early_stopping) and since_best >= recipe.early_stopping
        if temperature is None and (stopping or epoch == recipe.epochs):
            temperature = _training_temperature(model_for_use, train_set, dev)
        row["seconds"] = time.perf_counter() - started
        elapsed += row["seconds"]
        row["elapsed"] = elapsed
        history.append(row)
        schedule.epoch_end(monitored)
        log(_epoch_line(row, recipe.epochs))

        _write_jsonl(run_dir / HISTORY, history)
        saved = {"epoch": epoch, "metrics": row, "temperature": temperature, **meta}
        checkpoint.save(run_dir / FINAL, model_for_use, config["model"], config["arguments"], **saved)
        if config.get("keep_epochs"):
            checkpoint.save(run_dir / f"epoch-{epoch:03d}.safetensors", model_for_use, config["model"], config["arguments"], **saved)
        if improved:
            checkpoint.save(run_dir / BEST, model_for_use, config["model"], config["arguments"], **saved)
        checkpoint.save_state(run_dir / STATE, {
            "epoch": epoch, "model": net.state_dict(), "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(), "ema": ema.model.state_dict() if ema else None,
            "rng": torch.get_rng_state(), "generator": generator.get_state(),
            "best_accuracy": best_accuracy, "since_best": since_best,
        })
        if stopping:
            log(f"early stopping: no validation gain for {since_best} epochs")
            break

    if len(history) > 1:  # a one-point curve says nothing, and importing matplotlib takes most of a second
        from digitrec import plots

        plots.training_curves(history, run_dir / "curves.png")
    _export(run_dir, log)
    return RunResult(run_dir, history)


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

    if current_export(run_dir) is not None:  # a finished run resumed (an ensemble's members): nothing new to export
        return
    try:
        export_onnx(run_dir)
    except Exception as e:  # the run is complete without it: evaluate and predict fall back to PyTorch
        log(f"note: no ONNX export ({e.__class__.__name__}: {str(e).splitlines()[0][:200]}); PyTorch will run this model")


ENSEMBLE_MEMBERS = 4
ENSEMBLE_PRESETS = ("default",)


def train_ensemble(presets: str | Sequence[str] = ENSEMBLE_PRESETS, members: int = ENSEMBLE_MEMBERS, *, out: str | Path | None = None,
                   seed: int = 0, data_spec: str = "mnist", data_dir: str | Path | None = None, device: str = "auto",
                   progress: bool = True, log: Callable[[str], None] = print) -> RunResult:
    """Train ``members`` models, member N from ``presets[N % len(presets)]`` with seed ``seed + N``, and combine them.

    Four default models by default: members of one recipe make much the same mistakes, so on MNIST
    a fifth or sixth adds under 0.01 points (BENCHMARKS.md) while each adds ~0.9 s to evaluating
    the 10,000 test digits on two CPU cores. Alternating with the ``elastic`` preset, whose members
    err on other digits, measured no better (BENCHMARKS.md), so it is an option, not the default.

    Each member is an ordinary run directory (``member-N``) inside ``out``; running the same command
    again skips finished members and resumes an interrupted one, so no member's work is lost.
    The combined model is ``out/final.safetensors`` with architecture ``ensemble``.
    """
    presets = [presets] if isinstance(presets, str) else list(presets)
    if members < 1:
        raise DigitrecError(f"an ensemble needs at least one member, got {members}", "--members")
    if not presets:
        raise DigitrecError("an ensemble needs at least one preset", "--recipe")
    for name in presets:
        if name not in models.PRESETS:
            raise DigitrecError(f"unknown preset {name!r}; choose from {', '.join(models.PRESETS)}", "--recipe")
    out = Path(out) if out else new_run_dir("ensemble")
    out.mkdir(parents=True, exist_ok=True)
    histories: list[dict[str, Any]] = []
    loaded_members: list[checkpoint.Checkpoint] = []
    for index in range(members):
        member_dir = out / f"member-{index}"
        label = f"member {index + 1}/{members}"
        preset = presets[index % len(presets)]
        chosen = models.PRESETS[preset]
        if not (member_dir / CONFIG).exists():
            log(f"{label}: training the {preset} preset with seed {seed + index}")
            result = train(chosen.model, chosen.recipe, arguments=chosen.arguments, data_spec=data_spec, data_dir=data_dir,
                           out=member_dir, seed=seed + index, device=device, progress=progress, log=log)
        else:
            log(f"{label}: continuing {member_dir}")
            result = resume(member_dir, device=device, progress=progress, log=log)
        histories += [{**row, "member": index} for row in result.history]
        loaded_members.append(checkpoint.load(result.final))
    specs = [{"architecture": m.architecture, "arguments": m.meta["arguments"]} for m in loaded_members]
    ensemble = models.Ensemble(specs)
    for target, source in zip(ensemble.members, loaded_members, strict=True):
        target.load_state_dict(source.model.state_dict())
    meta = loaded_members[0].meta
    temperature = _training_temperature(ensemble, data.load(data_spec, "train", data_dir), torch.device("cpu"))
    checkpoint.save(out / FINAL, ensemble, "ensemble", {"members": specs}, epoch=meta.get("epoch"), temperature=temperature,
                    training={"presets": presets, "members": members, "seed": seed}, data=meta["data"])
    _export(out, log)
    return RunResult(out, histories)


def _train_epoch(net: nn.Module, optimizer: torch.optim.Optimizer | SGD, schedule: LearningRate, ema: EMA | None, recipe: Recipe,
                 images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator, epoch: int, bar: Any) -> dict[str, Any]:
    """One pass over the shuffled training set; returns the epoch's training metrics."""
    net.train()
    steps = math.ceil(len(images) / recipe.batch_size)
    order = torch.randperm(len(images), generator=generator).to(images.device)
    loss_sum = torch.zeros((), device=images.device)
    correct = torch.zeros((), device=images.device, dtype=torch.long)
    for step in range(steps):
        batch = order[step * recipe.batch_size : (step + 1) * recipe.batch_size]
        x = images[batch].unsqueeze(1).float().div_(255)
        if recipe.augment.active:
            x = random_warp(x, recipe.augment, generator)
        x = x.contiguous(memory_format=torch.channels_last)
        y = labels[batch]
        lr = schedule.at((epoch - 1) * steps + step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        logits = net(x)
        loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing) + models.l2_penalty(net)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if ema is not None:
            ema.update(net)
        loss_sum += loss.detach() * len(batch)
        correct += (logits.argmax(1) == y).sum()
        bar.update()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}", acc=f"{float(correct) / ((step + 1) * recipe.batch_size):.2%}")
    return {"epoch": epoch, "train_loss": float(loss_sum) / len(images), "train_accuracy": float(correct) / len(images), "lr": lr}


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    line = f"epoch {row['epoch']:>3}/{epochs}  train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.2%}"
    if "val_accuracy" in row:
        line += f"  val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.2%}"
    return line + f"  lr {row['lr']:.2e}  {row['seconds']:.1f}s"


def with_overrides(recipe: Recipe, **overrides: Any) -> Recipe:
    """``recipe`` with the given fields replaced; ``None`` means keep."""
    changes = {k: v for k, v in overrides.items() if v is not None}
    jitter = ("rotation", "zoom", "shift", "elastic")
    if any(k in changes for k in jitter):
        augment = replace(recipe.augment, **{k: changes.pop(k) for k in jitter if k in changes})
        changes["augment"] = augment
    try:
        return replace(recipe, **changes)
    except ValueError as e:
        raise DigitrecError(str(e), "recipe") from None
