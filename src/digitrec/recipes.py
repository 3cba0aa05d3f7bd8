"""Training recipes: everything about *how* a model is trained, as one frozen value.

Every registered model carries its default recipe (a seed report's own optimizer, batch size,
epochs and schedule); the CLI's options replace single fields with :func:`dataclasses.replace`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adadelta")
SCHEDULES = ("constant", "step", "plateau", "onecycle", "cosine")


@dataclass(frozen=True)
class Augment:
    """Random jitter of whole batches: affine as Keras' ImageDataGenerator draws it, plus elastic warps."""

    rotation: float = 0.0  # degrees, uniform in [-rotation, rotation]
    zoom: float = 0.0  # x and y scale drawn independently from [1 - zoom, 1 + zoom]
    shift: float = 0.0  # fraction of the image size, uniform in [-shift, shift]
    elastic: float = 0.0  # strength of Simard's elastic distortion, in pixels; 0 = none
    elastic_sigma: float = 6.0  # smoothness of that distortion field, in pixels (Ciresan et al. 2010)

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
    validation: float = 0.1  # share of the training data held out, stratified
    early_stopping: int = 0  # stop after this many epochs without validation gain; 0 = never
    ema: float = 0.0  # decay of an exponential moving average of the weights; 0 = none

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose from {', '.join(SCHEDULES)}")
        if not 0.0 <= self.validation < 1.0:
            raise ValueError(f"validation share must be in [0, 1), got {self.validation}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs, batch size and learning rate must be positive")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Recipe:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in values.items() if k in known}
        if isinstance(values.get("augment"), dict):
            values["augment"] = Augment(**values["augment"])
        return cls(**values)
