"""digitrec: handwritten digit recognition — train, evaluate, predict.

>>> import digitrec
>>> run = digitrec.train("seed001-cnn5", epochs=1)           # a run directory under runs/
>>> report = digitrec.evaluate(run.run_dir)                   # metrics + report.html
>>> model = digitrec.load(run.final).model                    # a plain torch.nn.Module
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from digitrec import models
from digitrec.checkpoint import Checkpoint
from digitrec.checkpoint import load as load
from digitrec.data import Digits
from digitrec.data import load as load_data
from digitrec.errors import DigitrecError
from digitrec.recipes import Augment, Recipe
from digitrec.training import RunResult, resume

__all__ = ["Augment", "Checkpoint", "DigitrecError", "Digits", "Recipe", "RunResult", "evaluate", "load", "load_data",
           "models", "resume", "train"]


def train(model: str = models.DEFAULT_MODEL, recipe: Recipe | None = None, **options: Any) -> RunResult:
    """Train a registered model; recipe fields (``epochs=3``, ``lr=0.01``…) may be given as keywords.

    Other keywords (``data_spec``, ``data_dir``, ``out``, ``seed``, ``device``, ``keep_epochs``, ``progress``) go to
    :func:`digitrec.training.train`.
    """
    from digitrec import training

    run_options = {k: options.pop(k) for k in ("data_spec", "data_dir", "out", "seed", "device", "keep_epochs", "progress", "log",
                                               "arguments")
                   if k in options}
    if model not in models.REGISTRY:
        raise DigitrecError(f"unknown model {model!r}; `digitrec models` lists them")
    recipe = training.with_overrides(recipe or models.REGISTRY[model].recipe, **options)
    return training.train(model, recipe, **run_options)


def evaluate(model: str | Path, data_spec: str = "mnist", **options: Any):
    """Evaluate a checkpoint or run directory and write its report; returns a ``report.Report``."""
    from digitrec.report import evaluate_model  # matplotlib loads only when a report is made

    return evaluate_model(model, data_spec, **options)
