"""Training recipes: everything about *how* a model is trained, as one frozen, validated value.

Every registered model carries its default recipe (a seed report's own optimizer, batch size,
epochs and schedule); :mod:`digitrec.plans` replaces single fields. A recipe checks every field
when it is made, so a NaN learning rate or a smoothing of 2 is a one-line error before any
training, never a run that quietly learns nothing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from numbers import Integral, Real
from typing import Any, NamedTuple

from digitrec.errors import DigitrecError

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adadelta")
SCHEDULES = ("constant", "step", "plateau", "onecycle", "cosine")
ANNEALS = ("linear", "cos")
SPLITS = ("stratified", "last")


def option(default: Any, doc: str, *, choices: tuple[str, ...] | None = None, metavar: str | None = None) -> Any:
    """A recipe field with what a user is told of it: ``digitrec train`` makes its ``--option`` from this (:func:`options`)."""
    return field(default=default, metadata={"doc": doc, "choices": choices, "metavar": metavar})


class Option(NamedTuple):
    """A recipe field as a user sets it: its name, its type (``str``, ``int``, ``float`` or ``bool``), what it does."""

    name: str
    type: type
    doc: str
    choices: tuple[str, ...] | None
    metavar: str | None


def options() -> list[Option]:
    """Every field of :class:`Recipe` and of its :class:`Augment` (those set as plain values, in the order they are declared)."""
    types = {"str": str, "int": int, "float": float, "bool": bool, "float | None": float}
    return [Option(f.name, types[f.type], f.metadata["doc"], f.metadata["choices"], f.metadata["metavar"])
            for cls in (Recipe, Augment) for f in fields(cls) if "doc" in f.metadata]


def epochs_text(count: int) -> str:
    """``count`` epochs as a person writes it: "1 epoch", "3 epochs"."""
    return f"{count} epoch" if count == 1 else f"{count} epochs"


def _number(name: str, value: Any, low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = False,
            whole: bool = False) -> None:
    """Refuse ``value`` unless it is a finite number (whole if asked) in the interval from ``low`` to ``high``."""
    kind = "a whole number" if whole else "a finite number"
    if isinstance(value, bool):  # an int to Python: TOML's `epochs = true` is told it is a boolean
        raise DigitrecError(f"must be {kind}, got {str(value).lower()}, a boolean", name)
    if not isinstance(value, Integral if whole else Real) or not math.isfinite(value):
        raise DigitrecError(f"must be {kind}, got {value!r}", name)
    if value < low or (low_open and value == low) or value > high or (high_open and value == high):
        left, right = "(" if low_open else "[", ")" if high_open or high == math.inf else "]"
        raise DigitrecError(f"must be {kind} in {left}{low:g}, {high:g}{right}, got {value!r}", name)


@dataclass(frozen=True)
class Augment:
    """Random jitter of whole batches: affine as Keras' ImageDataGenerator draws it, plus elastic warps."""

    rotation: float = option(0.0, "rotate each image by up to this many degrees either way", metavar="DEGREES")
    zoom: float = option(0.0, "scale each axis by a factor drawn from [1 - zoom, 1 + zoom] (0.1 = up to 10 %)", metavar="FRACTION")
    shift: float = option(0.0, "shift by up to this fraction of the image size either way (0.1 = up to 2.8 px)", metavar="FRACTION")
    elastic: float = option(0.0, "strength of Simard's elastic warps in pixels (the elastic preset: 36); 0 = none", metavar="PIXELS")
    elastic_sigma: float = option(6.0, "smoothness of the elastic warps, in pixels (Ciresan et al. 2010: 6)", metavar="PIXELS")

    def __post_init__(self) -> None:
        _number("rotation", self.rotation, 0, 180)
        _number("zoom", self.zoom, 0, 1, high_open=True)
        _number("shift", self.shift, 0, 1, high_open=True)
        _number("elastic", self.elastic, 0)
        _number("elastic_sigma", self.elastic_sigma, 0, low_open=True)

    @property
    def active(self) -> bool:
        return bool(self.rotation or self.zoom or self.shift or self.elastic)


@dataclass(frozen=True)
class Recipe:
    """How a model is trained: each field's doc is what ``digitrec train --FIELD`` says of it."""

    optimizer: str = option("adam", "the optimizer", choices=OPTIMIZERS)
    lr: float = option(1e-3, "learning rate (the peak of the onecycle schedule), > 0")
    momentum: float = option(0.0, "momentum of SGD and RMSprop, in [0, 1)")
    nesterov: bool = option(False, "Nesterov momentum (SGD)")
    rho: float | None = option(None, "RMSprop's and Adadelta's averaging constant (default: the optimizer's own)")
    eps: float | None = option(None, "the optimizer's epsilon, > 0 (default: the optimizer's own)")
    weight_decay: float = option(0.0, "L2 penalty on weights, never on biases or norms (decoupled for adamw)")
    batch_size: int = option(128, "images per step: the global batch, shared out over the processes under torchrun")
    epochs: int = option(10, "passes over the training data")
    schedule: str = option("constant", "learning rate over time: constant; step (x gamma every step-size epochs); plateau "
                                       "(x plateau-factor after plateau-patience epochs without validation gain, as Keras' "
                                       "ReduceLROnPlateau); onecycle (rise, then fall to 0); cosine", choices=SCHEDULES)
    warmup: float = option(0.25, "onecycle: the share of the steps spent rising to lr, in [0, 1)", metavar="SHARE")
    anneal: str = option("linear", "onecycle: linear (airbench's triangle: from lr/25 up, then down to 0) or cos (PyTorch's "
                                   "OneCycleLR: cosine from lr/25 up, then down to lr/250000, the momentum or Adam's beta1 cycled "
                                   "0.95 -> 0.85 -> 0.95)", choices=ANNEALS)
    step_size: int = option(10, "step: epochs between reductions", metavar="EPOCHS")
    gamma: float = option(0.1, "step: the factor of each reduction, > 0", metavar="FACTOR")
    plateau_factor: float = option(0.5, "plateau: the factor of each reduction, in (0, 1)", metavar="FACTOR")
    plateau_patience: int = option(3, "plateau: epochs without validation gain before reducing (Keras' meaning)", metavar="EPOCHS")
    min_lr: float = option(0.0, "plateau: the rate is never reduced below this")
    label_smoothing: float = option(0.0, "share of each target spread over the other classes, in [0, 1)")
    augment: Augment = field(default_factory=Augment)
    validation: float = option(0.1, "share of the training data held out (kaggle data: 0.1 unless given)")
    split: str = option("stratified", "which share is held out: stratified (random per class, by the seed) or last (the end of "
                                      "the data, as Keras' validation_split)", choices=SPLITS)
    early_stopping: int = option(0, "stop after this many epochs without validation gain; 0 = off", metavar="EPOCHS")
    ema: float = option(0.0, "average the weights (e.g. 0.999), in [0, 1); 0 = off", metavar="DECAY")
    outliers: float = option(0.0, "outlier exposure: add synthetic shapes to every batch, taught to be no digit, with this loss "
                                  "weight (the default preset: 0.5), so that predict flags what is not a digit; 0 = off",
                             metavar="WEIGHT")
    flagged_ones: float = option(0.0, "draw this share of the training 1s with a European flag, which MNIST's writers seldom "
                                      "drew (the default preset: 0.2); 0 = off", metavar="SHARE")
    plain_epochs: int = option(0, "train the first EPOCHS without augmentation and before the plateau schedule watches, then "
                                  "the recipe's own (seed 004's two phases: 20 of 40); 0 = none", metavar="EPOCHS")

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise DigitrecError(f"unknown optimizer {self.optimizer!r}; choose from {', '.join(OPTIMIZERS)}", "optimizer")
        if self.schedule not in SCHEDULES:
            raise DigitrecError(f"unknown schedule {self.schedule!r}; choose from {', '.join(SCHEDULES)}", "schedule")
        if not isinstance(self.nesterov, bool):
            raise DigitrecError(f"must be true or false, got {self.nesterov!r}", "nesterov")
        if self.anneal not in ANNEALS:
            raise DigitrecError(f"unknown anneal {self.anneal!r}; choose from {', '.join(ANNEALS)}", "anneal")
        if self.split not in SPLITS:
            raise DigitrecError(f"unknown split {self.split!r}; choose from {', '.join(SPLITS)}", "split")
        if not isinstance(self.augment, Augment):
            raise DigitrecError(f"must be an Augment, got {type(self.augment).__name__}", "augment")
        _number("lr", self.lr, 0, low_open=True)
        _number("momentum", self.momentum, 0, 1, high_open=True)
        if self.rho is not None:
            _number("rho", self.rho, 0, 1)
        if self.eps is not None:
            _number("eps", self.eps, 0, low_open=True)
        _number("weight_decay", self.weight_decay, 0)
        _number("batch_size", self.batch_size, 1, whole=True)
        _number("epochs", self.epochs, 1, whole=True)
        _number("warmup", self.warmup, 0, 1, high_open=True)
        _number("step_size", self.step_size, 1, whole=True)
        _number("gamma", self.gamma, 0, low_open=True)
        _number("plateau_factor", self.plateau_factor, 0, 1, low_open=True, high_open=True)
        _number("plateau_patience", self.plateau_patience, 0, whole=True)
        _number("min_lr", self.min_lr, 0)
        _number("label_smoothing", self.label_smoothing, 0, 1, high_open=True)
        _number("validation", self.validation, 0, 1, high_open=True)
        _number("early_stopping", self.early_stopping, 0, whole=True)
        _number("ema", self.ema, 0, 1, high_open=True)
        _number("outliers", self.outliers, 0)
        _number("flagged_ones", self.flagged_ones, 0, 1)
        _number("plain_epochs", self.plain_epochs, 0, self.epochs, whole=True)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Recipe:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in values.items() if k in known}  # fields of older versions are dropped
        if isinstance(values.get("augment"), dict):
            jitter = {f.name for f in fields(Augment)}
            values["augment"] = Augment(**{k: v for k, v in values["augment"].items() if k in jitter})
        return cls(**values)


# digitrec's own recipe: one-cycle SGD with Nesterov momentum, label smoothing and batch augmentation.
DIGITNET_RECIPE = Recipe(optimizer="sgd", lr=0.2, momentum=0.9, nesterov=True, batch_size=128, epochs=20, schedule="onecycle",
                         warmup=0.2, label_smoothing=0.1, validation=0.0, augment=Augment(rotation=10, zoom=0.1, shift=0.1))

# The row reader (digitrec.tasks.RowsTask): an epoch is as many synthetic rows as there are training digits, so
# MNIST's 50,000 make 782 steps of 64 and nine epochs 7,038 steps. MNIST's last 10,000 training digits are held out:
# rows of them measure the reader and calibrate it. Its 1s are drawn with a European flag as the default model's are.
# The row reader and the detector anneal as PyTorch's OneCycleLR: on the linear triangle, detectors of three seeds
# flagged 26-30 of optdigits-dev's 2,880 real digits as no digit, on cos 11 (and 12-14 under the old trainers, which
# ran OneCycleLR itself); BENCHMARKS.md, "The row reader and the detector rebuilt by `digitrec train`".
ROWS_RECIPE = Recipe(optimizer="adamw", lr=2e-3, weight_decay=5e-4, batch_size=64, epochs=9, schedule="onecycle", warmup=0.1,
                     anneal="cos", validation=1 / 6, split="last", flagged_ones=0.2)
# The digit detector (digitrec.tasks.DetectorTask): MNIST's last 10,000 training digits set its threshold.
DETECTOR_RECIPE = Recipe(optimizer="adamw", lr=3e-3, weight_decay=5e-4, batch_size=256, epochs=8, schedule="onecycle", warmup=0.3,
                         anneal="cos", validation=1 / 6, split="last")
