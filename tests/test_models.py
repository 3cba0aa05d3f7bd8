"""The model zoo: every seed architecture by name, with its report's parameter count."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from digitrec import models

# Printed by the reports (seed 001's model summaries, seed 002's); the rest are counted from the
# layers the reports give (docs/seed-models.md shows the arithmetic).
REPORTED_PARAMETERS = {
    "seed001-mlp1": 39_760, "seed001-mlp2": 318_010, "seed001-mlp3": 266_610, "seed001-mlp4": 318_010,
    "seed001-mlp5": 318_010, "seed001-mlp6": 437_310, "seed001-mlp7": 437_310, "seed001-mlp8": 437_310,
    "seed001-mlp9": 437_310, "seed001-mlp10": 437_310, "seed001-cnn1": 54_410, "seed001-cnn2": 108_810,
    "seed001-cnn3": 11_850, "seed001-cnn4": 34_826, "seed001-cnn5": 34_826, "seed002": 887_530,
}
COUNTED_FROM_LAYERS = {
    "seed000-v1": 1_479_798, "seed000-v2": 1_199_882, "seed000-v3": 4_738_826, "seed000-v4": 785_608,
    "seed000-v5": 4_026_368, "seed003-original": 1_199_882, "seed003-small": 305_194, "seed003-l2": 1_199_882,
    "seed003-final": 305_194, "seed004": 876_618,
}


def test_every_seed_architecture_is_registered_by_its_name():
    expected = set(REPORTED_PARAMETERS) | set(COUNTED_FROM_LAYERS)
    assert expected <= set(models.REGISTRY)


@pytest.mark.parametrize("name,count", sorted({**REPORTED_PARAMETERS, **COUNTED_FROM_LAYERS}.items()))
def test_parameter_count_matches_the_report(name: str, count: int):
    assert models.parameter_count(models.create(name)) == count


@pytest.mark.parametrize("name", sorted(name for name, spec in models.REGISTRY.items() if not spec.composite and spec.task == "digits"))
def test_every_digit_model_maps_a_batch_of_digits_to_ten_logits(name: str):
    model = models.create(name).eval()
    with torch.no_grad():
        out = model(torch.rand(3, 1, 28, 28))
    assert out.shape == (3, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("arguments", [{}, {"kernels": [7, 5, 3]}, {"kernels": [3, 5, 5], "stem_stride": 2}])
def test_digitnet_kernels_size_the_first_convolution_of_each_block(arguments: dict):
    model = models.create("digitnet", **arguments).eval()
    stride = arguments.get("stem_stride", 1)
    firsts = [m for m in model.features if isinstance(m, nn.Conv2d) and (m.in_channels == 1 or m.in_channels != m.out_channels)]
    assert [m.kernel_size[0] for m in firsts] == list(arguments.get("kernels", [5, 3, 3]))
    assert firsts[0].stride == (stride, stride)
    with torch.no_grad():
        assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_seed_models_start_from_keras_initialisation():
    dense = next(m for m in models.create("seed001-mlp6").modules() if isinstance(m, nn.Linear))
    bound = (6 / (dense.in_features + dense.out_features)) ** 0.5  # Glorot uniform
    assert dense.weight.abs().max() <= bound
    assert dense.weight.abs().max() > 0.9 * bound
    assert torch.count_nonzero(dense.bias) == 0


def test_seed004_uses_keras_leaky_relu_slope():
    slopes = {m.negative_slope for m in models.create("seed004").modules() if isinstance(m, nn.LeakyReLU)}
    assert slopes == {0.3}


def test_l2_penalty_applies_only_to_the_layers_the_report_regularised():
    assert models.l2_penalty(models.create("seed003-small")) == 0.0
    final = models.create("seed003-final")
    first_conv = next(m for m in final.modules() if isinstance(m, nn.Conv2d))
    expected = 0.01 * (first_conv.weight.pow(2).sum() + first_conv.bias.pow(2).sum())
    assert torch.isclose(models.l2_penalty(final), expected)


def test_recipes_follow_the_reports():
    assert models.REGISTRY["seed002"].recipe.optimizer == "rmsprop"
    assert models.REGISTRY["seed002"].recipe.batch_size == 1000
    assert models.REGISTRY["seed002"].recipe.schedule == "plateau"
    assert models.REGISTRY["seed003-final"].recipe.epochs == 20
    assert models.REGISTRY["seed001-mlp7"].recipe.lr == 0.2
    assert models.REGISTRY["seed004"].recipe.augment.rotation == 10


def test_unknown_model_names_are_refused():
    with pytest.raises(KeyError, match="digitrec models"):
        models.create("resnet9000")
