"""Recipes refuse every value that would train nothing, before any training starts."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from digitrec.errors import DigitrecError
from digitrec.recipes import DIGITNET_RECIPE, Augment, Recipe

BAD_FIELDS = {
    "lr": [math.nan, math.inf, 0, -0.1, "0.1"],
    "momentum": [math.nan, 1.0, -0.5],
    "weight_decay": [math.nan, -1e-4],
    "batch_size": [0, 2.5, True],
    "epochs": [0, -1, 1.5],
    "label_smoothing": [2, 1.0, -0.1, math.nan],
    "validation": [1.0, -0.1],
    "early_stopping": [-1, 0.5],
    "ema": [1.5, 1.0, -0.1, math.nan],
    "warmup": [1.0, math.nan],
    "plateau_factor": [0, 1.0],
    "gamma": [0, math.inf],
    "min_lr": [-1e-5],
    "rho": [1.5],
    "eps": [0],
    "plain_epochs": [-1, 11, 0.5],  # at most the recipe's 10 epochs
    "flagged_ones": [-0.1, 1.5, math.nan],
}
BAD_JITTER = {"rotation": [math.nan, -5, 200], "zoom": [1.0, -0.1, math.nan], "shift": [1.0, math.inf], "elastic": [math.nan, -1],
              "elastic_sigma": [0]}


@pytest.mark.parametrize(("name", "value"), [(name, value) for name, values in BAD_FIELDS.items() for value in values])
def test_a_recipe_field_out_of_range_is_refused_naming_it(name: str, value: object):
    with pytest.raises(DigitrecError, match=f"^{name}: must be a (finite|whole) number") as raised:
        Recipe(**{name: value})
    assert raised.value.source == name


@pytest.mark.parametrize(("name", "value"), [(name, value) for name, values in BAD_JITTER.items() for value in values])
def test_an_augmentation_field_out_of_range_is_refused_naming_it(name: str, value: object):
    with pytest.raises(DigitrecError, match=f"^{name}: must be a finite number"):
        Augment(**{name: value})


def test_every_registered_recipe_is_valid_and_survives_a_round_trip():
    from digitrec import models, plans

    recipes = [spec.recipe for spec in models.REGISTRY.values()] + [plan.recipe for plan in plans.PRESETS.values()]
    for recipe in recipes:
        assert Recipe.from_dict(recipe.to_dict()) == recipe


def test_unknown_optimizer_and_schedule_list_the_choices():
    with pytest.raises(DigitrecError, match="unknown optimizer 'lion'; choose from sgd, adam"):
        replace(DIGITNET_RECIPE, optimizer="lion")
    with pytest.raises(DigitrecError, match="unknown schedule 'linear'"):
        replace(DIGITNET_RECIPE, schedule="linear")
    with pytest.raises(DigitrecError, match="unknown split 'first'; choose from stratified, last"):
        replace(DIGITNET_RECIPE, split="first")
