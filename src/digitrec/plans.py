"""What a run trains, decided in one place: a preset or model name plus recipe overrides -> a :class:`Plan`.

``digitrec train``, ``digitrec ensemble``, :func:`digitrec.train` and the scikit-learn estimator all
ask :func:`resolve`, so one name means one thing everywhere. The presets are digitrec's own net in
sizes measured on a 2-core CPU (BENCHMARKS.md); any registered architecture can be named instead,
with its report's recipe. Importing this module does not import PyTorch: the CLI builds its
choices from :data:`PRESETS`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from digitrec.errors import DigitrecError
from digitrec.recipes import DIGITNET_RECIPE, Augment, Recipe


@dataclass(frozen=True)
class Plan:
    """An architecture, its arguments and the recipe it is trained with, chosen together."""

    model: str
    arguments: dict[str, Any]
    recipe: Recipe
    summary: str = ""
    data: str = "mnist"  # the data spec it trains on unless told otherwise (a seed model: its report's)


DEFAULT = "default"

# Fixed schedules with no validation split: every training image is used and nothing is chosen by
# accuracy on held-out data, let alone the test set. BENCHMARKS.md has the measured figures.
PRESETS: dict[str, Plan] = {
    # fast's middle block has 16 channels, not 32: half the multiply-adds and ~27 % less time per epoch,
    # with the same accuracy on a held-out sixth of the training set (98.95 % against 98.96 %, 6 seeds).
    "fast": Plan("digitnet", {"widths": [16, 16, 64], "extra": [0, 0, 0], "stem_stride": 2},
                 replace(DIGITNET_RECIPE, epochs=1, augment=Augment()),  # one epoch gains nothing from jitter
                 "one epoch of a small net: >= 99.0 % in 7-9 s on two CPU cores"),
    "balanced": Plan("digitnet", {"widths": [32, 64, 128], "extra": [1, 1, 0], "stem_stride": 2},
                     replace(DIGITNET_RECIPE, epochs=2),
                     ">= 99.5 % in about a minute on two CPU cores"),
    # Outlier exposure (digitrec.outliers) teaches the model that reads people's images what is no
    # digit: with the balanced preset, 87 % of the development negatives flagged instead of 72 %,
    # and MNIST's test set read as well (99.57 % against 99.53 %; BENCHMARKS.md). A fifth of its training 1s are
    # drawn with a European flag (digitrec.variants), which a model trained on MNIST alone reads as a 7 (BENCHMARKS.md).
    "default": Plan("digitnet", {"widths": [32, 64, 128], "extra": [1, 1, 0]}, replace(DIGITNET_RECIPE, outliers=0.5, flagged_ones=0.2),
                    "the best single model within 10 minutes on two CPU cores; it knows what is not a digit"),
}
# Simard et al.'s elastic warps on top of the affine jitter: about as accurate alone, and wrong on
# other digits than the default model (BENCHMARKS.md), for ensembles of mixed members.
_DEFAULT_RECIPE = PRESETS["default"].recipe
PRESETS["elastic"] = replace(PRESETS["default"], recipe=replace(_DEFAULT_RECIPE, augment=replace(_DEFAULT_RECIPE.augment, elastic=36.0)),
                             summary="the default model trained on elastically warped digits (~1 s more per epoch)")

JITTER = tuple(f.name for f in fields(Augment))
RECIPE_FIELDS = tuple(f.name for f in fields(Recipe) if f.name != "augment") + JITTER
KAGGLE_VALIDATION = 0.1  # share of Kaggle's train.csv held out when the recipe holds out none


def with_overrides(recipe: Recipe, **overrides: Any) -> Recipe:
    """``recipe`` with the given fields replaced (``rotation`` and the other jitter fields included); ``None`` keeps a field."""
    changes = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(changes) - set(RECIPE_FIELDS))
    if unknown:
        raise DigitrecError(f"unknown recipe field {unknown[0]!r}; recipe fields are {', '.join(RECIPE_FIELDS)}", unknown[0])
    jitter = {k: changes.pop(k) for k in JITTER if k in changes}
    if jitter:
        changes["augment"] = replace(recipe.augment, **jitter)
    return replace(recipe, **changes)


def _architecture(name: str) -> Plan:
    from digitrec import models  # PyTorch is needed only to look an architecture up

    spec = models.REGISTRY.get(name)
    if spec is None:
        raise DigitrecError(f"unknown model {name!r}; `digitrec models` lists the architectures and presets", "model")
    if spec.composite:
        raise DigitrecError(f"{name!r} is combined from trained models, not trained itself: use `digitrec ensemble`", "model")
    return Plan(name, {}, spec.recipe, spec.summary, spec.data)


def resolve(model: str | None = None, recipe: str | Recipe | None = None, *, data: str | None = None,
            arguments: dict[str, Any] | None = None, **overrides: Any) -> Plan:
    """The plan for a preset or architecture name, with recipe fields replaced by ``overrides``.

    ``model`` is a preset (``fast``, ``balanced``, ``default``, ``elastic``) or a registered
    architecture (``seed002``, ``digitnet``…, with its report's recipe); ``recipe`` is a preset
    name or a :class:`Recipe`. A preset given as ``recipe`` must train the architecture given
    as ``model``, if any. Neither: the ``default`` preset. ``data`` (a data spec) replaces the data
    it trains on, which is MNIST except for seed models whose reports trained on Kaggle's CSV. On
    Kaggle's CSV a recipe that holds
    nothing out holds out 10 %, the only score there is before submitting. ``arguments`` replace
    the architecture's arguments (``{"widths": [16, 32, 64]}`` for digitnet).
    """
    if isinstance(recipe, str):
        if recipe not in PRESETS:
            raise DigitrecError(f"unknown preset {recipe!r}; choose from {', '.join(PRESETS)}", "recipe")
        plan = PRESETS[recipe]
        if model is not None and model not in (recipe, plan.model):
            raise DigitrecError(f"the {recipe} preset trains {plan.model}, not {model}: give a model or a preset, not both", "recipe")
    elif model is None or model in PRESETS:
        plan = PRESETS[model or DEFAULT]
    else:
        plan = _architecture(model)
    if isinstance(recipe, Recipe):
        plan = replace(plan, recipe=recipe)
    elif recipe is not None and not isinstance(recipe, str):
        raise DigitrecError(f"recipe must be a preset name or a Recipe, not {type(recipe).__name__}", "recipe")
    if arguments is not None:
        plan = replace(plan, arguments=dict(arguments))
    if data is not None:
        plan = replace(plan, data=data)
    kaggle = plan.data.startswith(("kaggle:", "kaggle-")) or plan.data.lower().endswith(".csv")
    if kaggle and overrides.get("validation") is None and not plan.recipe.validation:
        overrides["validation"] = KAGGLE_VALIDATION
    return replace(plan, recipe=with_overrides(plan.recipe, **overrides))
