"""The model registry: every architecture of the five seed reports, by name, and digitrec's own.

Each entry is a builder plus the recipe its report trained it with. Seed models keep their
original Keras layers (``docs/seed-models.md`` gives the source of every layer and number) and
Keras' initialisation; they return logits, and softmax lives in the loss. The digit models take
``(N, 1, 28, 28)`` float images scaled to [0, 1]; the two models that work beside them (the row
reader and the digit detector) say in their entry what they take and give, and which task of
:mod:`digitrec.tasks` trains them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from digitrec.mnist_format import FIELD, PIXELS
from digitrec.recipes import DETECTOR_RECIPE, DIGITNET_RECIPE, ROWS_RECIPE, Augment, Recipe

DIGITS_IN = {"images": {0: "batch"}, "logits": {0: "batch"}}  # a digit model's ONNX input and output, with their dynamic axes


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[..., nn.Module]
    recipe: Recipe
    summary: str
    reported: str = ""  # the accuracy its report claims, for comparison
    composite: bool = False  # built from other trained models, never from scratch
    data: str = "mnist"  # what its report trained on (a data spec): its replay trains on the same
    task: str = "digits"  # what it learns, and so how it is trained and measured (digitrec.tasks)
    example: tuple[int, ...] = (1, 1, FIELD, FIELD)  # an input of the shape it takes, for the ONNX export
    io: dict[str, dict[int, str]] = field(default_factory=lambda: DIGITS_IN)  # its ONNX input and output names, their dynamic axes


REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, build: Callable[..., nn.Module], recipe: Recipe, summary: str, reported: str = "",
             composite: bool = False, data: str = "mnist", **shape: object) -> None:
    """Add an architecture; ``shape`` (``task``, ``example``, ``io``) where it is not a digit model."""
    REGISTRY[name] = ModelSpec(name, build, recipe, summary, reported, composite, data, **shape)


def create(name: str, **arguments) -> nn.Module:
    """A freshly initialised model; ``arguments`` go to its builder (and are kept in checkpoints)."""
    if name not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; `digitrec models` lists them")
    return REGISTRY[name].build(**arguments)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def l2_penalty(model: nn.Module) -> torch.Tensor | float:
    """Keras-style ``l2(λ)·Σw²`` for the layers that ask for it (``layer.l2``)."""
    terms = [m.l2 * sum(p.pow(2).sum() for p in m.parameters(recurse=False)) for m in model.modules() if getattr(m, "l2", 0)]
    return sum(terms) if terms else 0.0


# --- Keras building blocks -------------------------------------------------------------------


class ChannelSoftmax(nn.Module):
    """Keras' ``activation='softmax'`` on a conv layer: softmax over channels at every pixel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.softmax(dim=1)


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "leaky": lambda: nn.LeakyReLU(0.3),  # Keras' LeakyReLU() default slope is 0.3, PyTorch's 0.01
    "linear": nn.Identity,
}


def conv(cin: int, cout: int, kernel: int | tuple[int, int], act: str = "relu", padding: str | int = 0,
         stride: int = 1, l2: float = 0.0) -> list[nn.Module]:
    layer = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding)
    layer.l2 = l2
    return [layer, ACTIVATIONS[act]()]


def dense(fin: int, fout: int, act: str = "relu") -> list[nn.Module]:
    return [nn.Linear(fin, fout), ACTIVATIONS[act]()]


def keras_model(*layers: nn.Module) -> nn.Sequential:
    """``nn.Sequential`` initialised as Keras does: Glorot-uniform kernels, zero biases."""
    model = nn.Sequential(*layers)
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


def classifier(fin: int) -> nn.Linear:
    """The final ``Dense(10, softmax)``: logits here, softmax in the loss."""
    return nn.Linear(fin, 10)


# --- seed 000: Kaggle Digit Recognizer, versions 1-5 --------------------------------------

KAGGLE = "kaggle-mnist"  # seeds 000 and 004 trained on Kaggle's train.csv (42,000 digits), rebuilt from MNIST
# Keras' fit(validation_split=v) holds out the last v of the data, as split="last" does
SEED000 = Recipe(optimizer="adam", eps=1e-7, batch_size=128, epochs=2, validation=0.2, split="last")


def seed000_v1() -> nn.Module:
    return keras_model(*conv(1, 20, 3), *conv(20, 20, 3), nn.Flatten(), *dense(24 * 24 * 20, 128), classifier(128))


def seed000_v2() -> nn.Module:
    return keras_model(*conv(1, 32, 3), *conv(32, 64, 3), nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
                       *dense(12 * 12 * 64, 128), nn.Dropout(0.5), classifier(128))


def seed000_v3() -> nn.Module:
    return keras_model(*conv(1, 32, 3), *conv(32, 64, 3), nn.Dropout(0.25), nn.Flatten(),
                       *dense(24 * 24 * 64, 128), nn.Dropout(0.5), classifier(128))


def seed000_v4() -> nn.Module:
    return keras_model(
        *conv(1, 200, 2), nn.AvgPool2d(2),
        nn.Conv2d(200, 200, 2, padding="same", groups=200),  # DepthwiseConv2D, linear
        *conv(200, 100, 6, padding="same"),
        nn.Conv2d(100, 10, (8, 2), padding="same"), ChannelSoftmax(),
        nn.MaxPool2d(2), nn.Flatten(), *dense(6 * 6 * 10, 128),
        classifier(128),  # Keras' Masking(0) here only zero-weights all-zero rows: an identity in effect
    )


def seed000_v5() -> nn.Module:
    return keras_model(
        *conv(1, 200, 2),
        nn.Conv2d(200, 200, (1, 5), padding="same", groups=200),  # DepthwiseConv2D, linear
        nn.Conv2d(200, 200, 4, padding="same", groups=200, bias=False),  # SeparableConv2D = depthwise…
        *conv(200, 100, 1),  # …then pointwise, with the ReLU
        *conv(100, 50, (5, 1)),
        nn.Flatten(), *dense(23 * 27 * 50, 128), classifier(128),
    )


register("seed000-v1", seed000_v1, SEED000, "seed 000, version 1: two 3x3 convs (20) + dense 128", "val 98.3 %, Kaggle 97.0 %", data=KAGGLE)
register("seed000-v2", seed000_v2, SEED000, "seed 000, version 2: Keras' mnist_cnn (32-64 convs, pool, dropout)",
         "val 98.8 %, Kaggle 98.567 %", data=KAGGLE)
register("seed000-v3", seed000_v3, replace(SEED000, optimizer="adadelta", lr=1e-3, rho=0.95),
         "seed 000, version 3: version 2 without pooling, Adadelta", "89 %", data=KAGGLE)
register("seed000-v4", seed000_v4, SEED000, "seed 000, version 4: 200-channel 2x2 conv, depthwise, channel softmax",
         "98 %, Kaggle 98.628 %", data=KAGGLE)
register("seed000-v5", seed000_v5, SEED000, "seed 000, version 5: depthwise + separable convs, dense 128",
         "98 %, Kaggle 98.939 %", data=KAGGLE)


# --- seed 001: MNIST, MLP 1-10 and CNN 1-5 --------------------------------------------------


def mlp(*hidden: tuple[int, str], input_dropout: float = 0.0, dropout: float = 0.0) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    if input_dropout:
        layers.append(nn.Dropout(input_dropout))
    width = PIXELS
    for i, (units, act) in enumerate(hidden):
        layers += dense(width, units, act)
        if dropout and i < len(hidden) - 1:
            layers.append(nn.Dropout(dropout))
        width = units
    return keras_model(*layers, classifier(width))


def seed001_cnn(filters: int = 32, stride: int = 1, second: bool = False, dropout: float = 0.0) -> nn.Module:
    if second:  # conv 32 -> pool -> conv 64 -> pool: 26 -> 13 -> 11 -> 5
        features, width = [*conv(1, 32, 3), nn.MaxPool2d(2), *conv(32, 64, 3), nn.MaxPool2d(2)], 5 * 5 * 64
    else:
        side = ((FIELD - 3) // stride + 1) // 2
        features, width = [*conv(1, filters, 3, stride=stride), nn.MaxPool2d(2)], side * side * filters
    head = [nn.Dropout(dropout)] if dropout else []
    return keras_model(*features, nn.Flatten(), *head, classifier(width))


SEED001 = Recipe(optimizer="sgd", lr=0.01, batch_size=128, epochs=30, validation=0.1, split="last")
SEED001_CNN = Recipe(optimizer="adam", eps=1e-7, batch_size=128, epochs=30, validation=0.1, split="last")
_mlp_variants = [
    ("mlp1", lambda: mlp((50, "linear")), SEED001, "784-50-10, linear hidden layer, SGD 0.01", "92.06 %"),
    ("mlp2", lambda: mlp((400, "linear")), SEED001, "784-400-10, linear hidden layer", "92.08 %"),
    ("mlp3", lambda: mlp((300, "linear"), (100, "linear")), SEED001, "784-300-100-10, linear", "92.23 %"),
    ("mlp4", lambda: mlp((400, "sigmoid")), SEED001, "784-400-10, sigmoid", "90.74 %"),
    ("mlp5", lambda: mlp((400, "relu")), SEED001, "784-400-10, ReLU", "94.78 %"),
    ("mlp6", lambda: mlp((400, "relu"), (300, "relu")), SEED001, "784-400-300-10, ReLU", "96.09 %"),
    ("mlp7", lambda: mlp((400, "relu"), (300, "relu")), replace(SEED001, lr=0.2),
     "784-400-300-10, ReLU, SGD 0.2", "98.22 %"),
    ("mlp8", lambda: mlp((400, "relu"), (300, "relu"), input_dropout=0.2, dropout=0.2),
     replace(SEED001, lr=0.2), "mlp7 with dropout 0.2, SGD 0.2", "98.51 %"),
    ("mlp9", lambda: mlp((400, "relu"), (300, "relu"), input_dropout=0.2, dropout=0.2),
     replace(SEED001_CNN, lr=0.2), "mlp8 with Adam at lr 0.2 (diverges, as reported)", "10.1 %"),
    ("mlp10", lambda: mlp((400, "relu"), (300, "relu"), input_dropout=0.2, dropout=0.2), SEED001_CNN,
     "mlp8 with Adam at lr 0.001", "98.43 %"),
    ("cnn1", lambda: seed001_cnn(), replace(SEED001_CNN, epochs=10), "conv 32 3x3, pool, dense", "98.16 %"),
    ("cnn2", lambda: seed001_cnn(filters=64), SEED001_CNN, "conv 64 3x3, pool, dense", "98.21 %"),
    ("cnn3", lambda: seed001_cnn(stride=2), SEED001_CNN, "conv 32 3x3 stride 2, pool, dense", "98.01 %"),
    ("cnn4", lambda: seed001_cnn(second=True), SEED001_CNN, "conv 32, pool, conv 64, pool, dense (keras-io)", "99.07 %"),
    ("cnn5", lambda: seed001_cnn(second=True, dropout=0.2), SEED001_CNN, "cnn4 with dropout 0.2 before the output",
     "99.24 %"),
]
for _variant, _build, _recipe, _summary, _reported in _mlp_variants:
    register(f"seed001-{_variant}", _build, _recipe, f"seed 001, {_variant.upper()}: {_summary}", _reported)


# --- seed 002: CNN with RMSprop and ReduceLROnPlateau ---------------------------------------


def seed002() -> nn.Module:
    return keras_model(
        *conv(1, 32, 5, padding="same"), *conv(32, 32, 5, padding="same"), nn.MaxPool2d(2), nn.Dropout(0.25),
        *conv(32, 64, 3, padding="same"), *conv(64, 64, 3, padding="same"), nn.MaxPool2d(2), nn.Dropout(0.25),
        nn.Flatten(), *dense(7 * 7 * 64, 256), nn.Dropout(0.5), classifier(256),
    )


register("seed002", seed002,
         Recipe(optimizer="rmsprop", lr=1e-3, rho=0.9, eps=1e-8, batch_size=1000, epochs=30, schedule="plateau",
                plateau_factor=0.5, plateau_patience=3, min_lr=1e-5, validation=0.1),
         "seed 002: 5x5 32-32, 3x3 64-64, dense 256, RMSprop + ReduceLROnPlateau", "99.6 %")


# --- seed 003: the overfitting study ----------------------------------------------------------


def seed003(second: int = 64, hidden: int = 128, l2: float = 0.0) -> nn.Module:
    return keras_model(
        *conv(1, 32, 3, l2=l2), *conv(32, second, 3), nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
        *dense(12 * 12 * second, hidden), nn.Dropout(0.5), classifier(hidden),
    )


# seed 003 gave Keras its test set as validation_data, which no callback read: it trained on all 60,000 and chose
# nothing; its replay watches the test set for the curves (train --watch mnist) and holds nothing out
SEED003 = Recipe(optimizer="adam", eps=1e-7, batch_size=128, epochs=20, validation=0.0)
register("seed003-original", seed003, SEED003, "seed 003, original: Keras' mnist_cnn", "99.31 %")
register("seed003-small", lambda: seed003(32, 64), SEED003, "seed 003, smaller: second conv 32, hidden 64", "99.03 %")
register("seed003-l2", lambda: seed003(l2=0.01), SEED003, "seed 003, original with L2(0.01) on the first conv", "99.14 %")
register("seed003-final", lambda: seed003(32, 64, l2=0.01), SEED003, "seed 003, final: smaller + L2(0.01)", "99.14 %")


# --- seed 004: LeakyReLU CNN with augmentation ------------------------------------------------


def seed004() -> nn.Module:
    return keras_model(
        *conv(1, 32, 3, "leaky", "same"), *conv(32, 32, 3, "leaky", "same"), nn.MaxPool2d(2), nn.Dropout(0.25),
        *conv(32, 64, 3, "leaky", "same"), *conv(64, 64, 3, "leaky", "same"), nn.MaxPool2d(2), nn.Dropout(0.25),
        nn.Flatten(), *dense(7 * 7 * 64, 256), *dense(256, 32), classifier(32),  # Dense(10, sigmoid): see seed004's recipe
    )


# tf.keras caches a sigmoid's input as its logits, and sparse categorical cross-entropy uses them: the report's
# sigmoid output was trained as softmax cross-entropy on the pre-sigmoid values, which is what runs here. Its answer
# (the largest sigmoid) is the largest logit. Twenty plain epochs, then the same model twenty more with augmentation
# and ReduceLROnPlateau; Keras' validation_split-style last 20 % of Kaggle's (shuffled) train.csv held out.
register("seed004", seed004,
         Recipe(optimizer="adam", eps=1e-7, batch_size=256, epochs=40, plain_epochs=20, schedule="plateau", plateau_factor=0.5,
                plateau_patience=2, min_lr=1e-5, validation=0.2, split="last", augment=Augment(rotation=10, zoom=0.1, shift=0.1)),
         "seed 004: LeakyReLU(0.3) CNN, sigmoid output; 20 plain epochs, then 20 with augmentation + ReduceLROnPlateau",
         "val 99.32 % before augmentation, 97.80 % after", data=KAGGLE)


# --- digitrec's own ------------------------------------------------------------------------------


def conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def pooled_block(cin: int, cout: int, kernel: int, extra: int) -> list[nn.Module]:
    """conv -> max-pool -> BN -> ReLU, then ``extra`` 3x3 conv-BN-ReLU layers at the pooled size.

    Pooling straight after the convolution (as airbench does) lets BatchNorm and ReLU, which cost
    memory traffic rather than FLOPs and dominate small nets on a CPU, run on a 4x smaller map.
    """
    layers = [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(cout),
              nn.ReLU(inplace=True)]
    for _ in range(extra):
        layers += conv_bn(cout, cout)
    return layers


class DigitNet(nn.Module):
    """digitrec's own CNN, shaped for a CPU: 28 -> 14 -> 7 -> 3 px in three blocks, then a linear head.

    ``widths`` sets the channels of the three blocks, ``kernels`` the size of each block's first
    convolution and ``extra`` the added 3x3 layers of each.
    ``stem_stride=2`` replaces the first block's full-resolution convolution and pooling by a
    stride-2 convolution: a quarter of the stem's cost, for the recipes that race the clock.
    """

    def __init__(self, widths: tuple[int, int, int] | list[int] = (32, 64, 128), extra: tuple[int, int, int] | list[int] = (1, 1, 0),
                 stem_stride: int = 1, kernels: tuple[int, int, int] | list[int] = (5, 3, 3)):
        super().__init__()
        a, b, c = widths
        if stem_stride == 2:
            stem = [nn.Conv2d(1, a, kernels[0], stride=2, padding=kernels[0] // 2, bias=False), nn.BatchNorm2d(a), nn.ReLU(inplace=True)]
            stem += [layer for _ in range(extra[0]) for layer in conv_bn(a, a)]
        else:
            stem = pooled_block(1, a, kernels[0], extra[0])
        self.features = nn.Sequential(*stem, *pooled_block(a, b, kernels[1], extra[1]), *pooled_block(b, c, kernels[2], extra[2]))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * 3 * 3, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


register("digitnet", DigitNet, DIGITNET_RECIPE, "digitrec's own: pooled BatchNorm CNN, one-cycle SGD, augmentation")


class Ensemble(nn.Module):
    """Several models voting: the log of their mean probabilities, usable as logits."""

    def __init__(self, members: list[dict]):
        super().__init__()
        self.members = nn.ModuleList(create(m["architecture"], **m.get("arguments", {})) for m in members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probabilities = torch.stack([member(x).softmax(1) for member in self.members]).mean(0)
        return probabilities.clamp_min(1e-12).log()


register("ensemble", Ensemble, DIGITNET_RECIPE, "several trained models averaging their probabilities (digitrec ensemble)",
         composite=True)


# --- the models that work beside a digit model ------------------------------------------------


def _conv_bn(cin: int, cout: int, kernel: int | tuple[int, int] = 3, padding: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, padding=padding, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


ROW_CLASSES = 11  # ten digits, then CTC's blank


class RowNet(nn.Module):
    """The row reader: six 3x3 convolutions (16, 32, 64 channels; pooled to 7 rows and one column in two), the height
    collapsed, then two 1-D convolutions over the columns (5 wide each: each column sees about two digits either side)
    and 11 classes. ``(N, 1, 28, W)`` (a row as :attr:`digitrec.images.Page.row` gives it, as high as MNIST's field)
    -> ``(N, 11, W / 2)``: a column of logits for every 2 px of the row."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(*_conv_bn(1, 16), *_conv_bn(16, 16), nn.MaxPool2d(2), *_conv_bn(16, 32), *_conv_bn(32, 32),
                                      nn.MaxPool2d((2, 1)), *_conv_bn(32, 64), *_conv_bn(64, 64), *_conv_bn(64, 128, (FIELD // 4, 1), 0))
        self.columns = nn.Sequential(nn.Conv1d(128, 128, 5, padding=2), nn.ReLU(inplace=True),
                                     nn.Conv1d(128, 128, 5, padding=2), nn.ReLU(inplace=True), nn.Conv1d(128, ROW_CLASSES, 1))

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.columns(self.features(rows).squeeze(2))


class DetectorNet(nn.Module):
    """The digit detector: three 3x3 convolutions (``width``, twice and four times as many channels; pooled twice), the
    strongest response of each, and one score. ``(N, 1, 28, 28)`` -> ``(N, 1)``; high: not a digit."""

    def __init__(self, width: int = 24) -> None:
        super().__init__()
        self.layers = nn.Sequential(*_conv_bn(1, width), nn.MaxPool2d(2), *_conv_bn(width, 2 * width), nn.MaxPool2d(2),
                                    *_conv_bn(2 * width, 4 * width), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(4 * width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


register("rows", RowNet, ROWS_RECIPE, "the row reader: reads a written number uncut (CTC over synthetic rows of MNIST digits)",
         task="rows", example=(1, 1, FIELD, 64), io={"rows": {0: "batch", 3: "width"}, "logits": {0: "batch", 2: "columns"}})
register("detector", DetectorNet, DETECTOR_RECIPE, "the digit detector: tells a digit from letters, signs, scribbles, shapes",
         task="detector", io={"images": {0: "batch"}, "scores": {0: "batch"}})
