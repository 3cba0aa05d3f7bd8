"""digitrec: handwritten digit recognition — train, evaluate, predict.

>>> import digitrec
>>> run = digitrec.train("seed001-cnn5", epochs=1)           # a run directory under runs/
>>> report = digitrec.evaluate(run.run_dir)                   # metrics + report.html
>>> reader = digitrec.load(run.run_dir)                       # or a .safetensors / .onnx file
>>> reader.predict(["seven.png", "photo-of-a-two.jpg"])       # array([7, 2])
>>> reader.model                                              # the plain torch.nn.Module

Names are imported on first use, so ``import digitrec`` (and reading digits with an exported ONNX
model) does not pay the 1.3 s that importing PyTorch takes.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from digitrec.checkpoint import Checkpoint
    from digitrec.data import Digits
    from digitrec.data import load as load_data
    from digitrec.errors import DigitrecError
    from digitrec.estimator import DigitClassifier
    from digitrec.predict import Predictor, Reading, load
    from digitrec.recipes import Augment, Recipe
    from digitrec.report import Report
    from digitrec.training import RunResult, resume

_LAZY = {
    "Augment": ("digitrec.recipes", "Augment"),
    "Checkpoint": ("digitrec.checkpoint", "Checkpoint"),
    "DigitClassifier": ("digitrec.estimator", "DigitClassifier"),
    "DigitrecError": ("digitrec.errors", "DigitrecError"),
    "Digits": ("digitrec.data", "Digits"),
    "Predictor": ("digitrec.predict", "Predictor"),
    "Reading": ("digitrec.predict", "Reading"),
    "Recipe": ("digitrec.recipes", "Recipe"),
    "RunResult": ("digitrec.training", "RunResult"),
    "load": ("digitrec.predict", "load"),
    "load_data": ("digitrec.data", "load"),
    "resume": ("digitrec.training", "resume"),
}

__all__ = ["Augment", "Checkpoint", "DigitClassifier", "DigitrecError", "Digits", "Predictor", "Reading", "Recipe", "RunResult",
           "evaluate", "load", "load_data", "resume", "train"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    if name == "models":
        return importlib.import_module("digitrec.models")
    raise AttributeError(f"module 'digitrec' has no attribute {name!r}")


def train(model: str | None = None, recipe: str | Recipe | None = None, **options: Any) -> RunResult:
    """Train a preset (``"fast"``, ``"balanced"``, ``"default"``, ``"elastic"``) or a registered model into a new run directory.

    ``recipe`` is a preset name or a :class:`Recipe`; recipe fields (``epochs=3``, ``lr=0.01``,
    ``rotation=10``…) may be given as keywords. Other keywords (``data_spec``, ``data_dir``, ``out``,
    ``seed``, ``device``, ``keep_epochs``, ``progress``, ``log``) go to :func:`digitrec.training.train`.
    """
    from digitrec import plans, training

    run_options = {k: options.pop(k) for k in ("data_spec", "data_dir", "out", "seed", "device", "keep_epochs", "progress", "log")
                   if k in options}
    plan = plans.resolve(model, recipe, data=run_options.pop("data_spec", None), **options)
    return training.train(plan, **run_options)


def evaluate(model: str | Path, data_spec: str = "mnist", **options: Any) -> Report:
    """Evaluate a checkpoint, run directory or ONNX file and write its report."""
    from digitrec.report import evaluate_model

    return evaluate_model(model, data_spec, **options)
