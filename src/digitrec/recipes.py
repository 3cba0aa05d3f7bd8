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
from typing import Any

from digitrec.errors import DigitrecError

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adadelta")
SCHEDULES = ("constant", "step", "plateau", "onecycle", "cosine")
SPLITS = ("stratified", "last")


def _number(name: str, value: Any, low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = False,
            whole: bool = False) -> None:
    """Refuse ``value`` unless it is a finite number (whole if asked) in the interval from ``low`` to ``high``."""
    kind = "a whole number" if whole else "a finite number"
    if isinstance(value, bool) or not isinstance(value, Integral if whole else Real) or not math.isfinite(value):
        raise DigitrecError(f"must be {kind}, got {value!r}", name)
    if value < low or (low_open and value == low) or value > high or (high_open and value == high):
        left, right = "(" if low_open else "[", ")" if high_open or high == math.inf else "]"
        raise DigitrecError(f"must be {kind} in {left}{low:g}, {high:g}{right}, got {value!r}", name)


@dataclass(frozen=True)
class Augment:
    """Random jitter of whole batches: affine as Keras' ImageDataGenerator draws it, plus elastic warps."""

    rotation: float = 0.0  # degrees, uniform in [-rotation, rotation]
    zoom: float = 0.0  # x and y scale drawn independently from [1 - zoom, 1 + zoom]
    shift: float = 0.0  # fraction of the image size, uniform in [-shift, shift]
    elastic: float = 0.0  # strength of Simard's elastic distortion, in pixels; 0 = none
    elastic_sigma: float = 6.0  # smoothness of that distortion field, in pixels (Ciresan et al. 2010)

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
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0  # SGD
    nesterov: bool = False  # SGD
    rho: float | None = None  # RMSprop's and Adadelta's averaging constant; None = the optimizer's default
    eps: float | None = None
    weight_decay: float = 0.0  # decoupled for AdamW, L2 otherwise; never on biases or norms
    batch_size: int = 128
    epochs: int = 10
    schedule: str = "constant"
    warmup: float = 0.25  # onecycle: share of the steps spent rising to lr
    step_size: int = 10  # step: epochs between reductions
    gamma: float = 0.1  # step: factor per reduction
    plateau_factor: float = 0.5
    plateau_patience: int = 3  # epochs without validation-accuracy gain before reducing (Keras' meaning)
    min_lr: float = 0.0
    label_smoothing: float = 0.0
    augment: Augment = field(default_factory=Augment)
    validation: float = 0.1  # share of the training data held out
    split: str = "stratified"  # which: a stratified random share chosen by the run's seed, or "last", Keras' validation_split
    early_stopping: int = 0  # stop after this many epochs without validation gain; 0 = never
    ema: float = 0.0  # decay of an exponential moving average of the weights; 0 = none
    outliers: float = 0.0  # weight of outlier exposure (digitrec.outliers): non-digits in every batch, taught to be no class; 0 = none
    flagged_ones: float = 0.0  # share of the training 1s drawn with a European flag (digitrec.variants); 0 = none
    # epochs trained first as a plain phase: no augmentation, no plateau watching (seed 004 trained 20 such epochs, then
    # continued the same model with augmentation and ReduceLROnPlateau); 0 = none
    plain_epochs: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise DigitrecError(f"unknown optimizer {self.optimizer!r}; choose from {', '.join(OPTIMIZERS)}", "optimizer")
        if self.schedule not in SCHEDULES:
            raise DigitrecError(f"unknown schedule {self.schedule!r}; choose from {', '.join(SCHEDULES)}", "schedule")
        if not isinstance(self.nesterov, bool):
            raise DigitrecError(f"must be true or false, got {self.nesterov!r}", "nesterov")
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
