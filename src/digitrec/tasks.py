"""What a model learns: the seam between the training loop and what it trains on.

The loop (:mod:`digitrec.training`) shuffles, steps the optimizer and the schedule, keeps the
weights' average, saves, stops and resumes. A task says the rest: what a batch holds, its loss,
what is measured on held-out data after each epoch, how the model's outputs are calibrated, and
what its files say it is. Every model in the registry names its task:

* ``digits``: MNIST-format digits, ten classes (every seed model, digitnet, the presets);
* ``rows``: synthetic rows of 1 to 6 training digits, read whole with CTC (the row reader);
* ``detector``: digits against pages of letters, signs, scribbles and shapes, one score (the digit detector).

Every random draw comes from the run's seed and the batch's place in the run, so a resumed run
draws what it would have drawn.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from digitrec import data, distributed, models, outliers, variants
from digitrec.augment import random_warp
from digitrec.detector import KIND as DETECTOR_KIND
from digitrec.distributed import Group
from digitrec.errors import DigitrecError
from digitrec.inference import predict_logits
from digitrec.metrics import Evaluation, fit_temperature
from digitrec.recipes import Augment, Recipe
from digitrec.rows import BLANK, digit_frames
from digitrec.rows import KIND as ROWS_KIND
from digitrec.rows import decode as decode_row

OUTLIER_SHARE = 4  # outlier exposure adds one non-digit for every this many digits
# Recipe fields that only some tasks read; the optimizer's, the schedule's, the split's and the average's are every task's.
DIGIT_FIELDS = frozenset({"label_smoothing", "augment", "outliers", "flagged_ones", "plain_epochs"})
HELD_OUT_ROWS = 2_000  # synthetic rows (or pages of each kind) of held-out digits that measure and calibrate a task
HELD_OUT_SEED = 12_345  # the held-out rows and pages are the same whatever the run's seed


class Task:
    """The digits task, and what the others replace: MNIST-format digits, cross-entropy over ten classes.

    ``examples`` are the epoch's, in the order the loop shuffles; ``trained_on`` and ``meta`` go into
    every checkpoint. :meth:`inputs` gives a process its share of a batch, :meth:`loss` its share
    of the batch's loss, :meth:`measure` the held-out figures and calibration after an epoch.
    """

    name = "digits"
    kind: str | None = None  # what its model files say it is; None: a digit model
    uses = DIGIT_FIELDS
    held_out = False  # whether it needs a held-out share of the digits (recipe.validation)

    def __init__(self, recipe: Recipe, digits: data.Digits, seed: int, device: torch.device, *, watch: data.Digits | None = None,
                 measured: bool = True):
        self.recipe, self.device = recipe, device
        if recipe.validation and measured:
            train_index, val_index = data.holdout_split(digits.labels, recipe.validation, seed, recipe.split)
            self.train_set, self.val_set = digits.subset(train_index), digits.subset(val_index, f"{digits.name} (validation)")
        else:
            self.train_set, self.val_set = digits, None
        self.watched = watch
        self.examples = len(self.train_set)
        self.trained_on = {"name": digits.name, "checksum": digits.checksum, "count": len(self.train_set)}
        self.meta: dict[str, Any] = {}
        # flagged 1s and outliers are drawn from the run's seed alone, so a resumed run has the same
        train = self.train_set
        self.images = torch.tensor(variants.flag_ones(train.images, train.labels, recipe.flagged_ones, seed), device=device)
        self.labels = torch.tensor(train.labels, device=device)
        self.strangers = outliers.bank(len(self.images) // OUTLIER_SHARE, seed).to(device) if recipe.outliers else None

    @staticmethod
    def epoch_examples(digits: int) -> int:
        """How many examples an epoch has when this many digits are trained on."""
        return digits

    def inputs(self, generator: torch.Generator, batch: torch.Tensor, mine: torch.Tensor, epoch: int,
               group: Group) -> tuple[torch.Tensor, Any, int]:
        """This process's share of a global batch as the model takes it (float, channels last, augmented past the plain
        epochs), its digits then its strangers; their labels; and how many strangers the whole batch holds."""
        recipe, strangers = self.recipe, self.strangers
        x = self.images[mine]
        shared = len(batch) // OUTLIER_SHARE if strangers is not None else 0
        if strangers is not None:
            drawn = torch.randint(len(strangers), (shared,), generator=generator)
            x = torch.cat([x, strangers[drawn[group.share(shared)]]])
        x = x.unsqueeze(1).float().div_(255)
        if recipe.augment.active and epoch > recipe.plain_epochs:
            rows = None
            if group.size > 1:  # this process's digits and strangers among the global batch's draws
                digits, others = range(len(batch))[group.share(len(batch))], range(shared)[group.share(shared)]
                rows = torch.tensor([*digits, *(len(batch) + i for i in others)], dtype=torch.long)
            x = random_warp(x, recipe.augment, generator, rows=rows, total=len(batch) + shared)
        return x.contiguous(memory_format=torch.channels_last), self.labels[mine], shared

    def loss(self, logits: torch.Tensor, y: torch.Tensor, net: nn.Module, batch: int, shared: int, group: Group) -> torch.Tensor:
        """This process's share of the batch's loss: its digits' cross-entropy, the L2 penalty, and its strangers' (the
        logits past the digits') cross-entropy to the uniform distribution, each scaled so that DDP's average is the
        whole batch's."""
        recipe = self.recipe
        digits, strangers = logits[: len(y)], logits[len(y) :]
        loss = F.cross_entropy(digits, y, label_smoothing=recipe.label_smoothing) * (len(y) * group.size / batch) + models.l2_penalty(net)
        if len(strangers):
            loss = loss + recipe.outliers * (len(strangers) * group.size / shared) * (strangers.logsumexp(1) - strangers.mean(1)).mean()
        return loss

    def hits(self, logits: torch.Tensor, y: Any) -> torch.Tensor:
        """How many of this process's examples the model got right."""
        return (logits[: len(y)].argmax(1) == y).sum()

    def measure(self, model: nn.Module, row: dict[str, Any], group: Group) -> dict[str, Any]:
        """The held-out (and watched) figures added to ``row``; the calibration fitted on the held-out digits, if any."""
        temperature = None
        if self.val_set is not None:
            val_logits = _logits(model, self.val_set.images, self.device, group)
            result = Evaluation.from_logits(val_logits, self.val_set.labels)
            row.update(val_loss=result.loss, val_accuracy=result.accuracy)
            temperature = fit_temperature(val_logits, self.val_set.labels)
        if self.watched is not None:  # for the curves only: nothing reads it
            result = Evaluation.from_logits(_logits(model, self.watched.images, self.device, group), self.watched.labels)
            row.update(test_loss=result.loss, test_accuracy=result.accuracy)
        return {"temperature": temperature}

    def finish(self, model: nn.Module, calibration: dict[str, Any]) -> dict[str, Any]:
        """The final model's calibration: a temperature :meth:`measure` had no held-out digits for is fitted on training
        digits (the row reader and the detector always have theirs)."""
        if "temperature" in calibration and calibration["temperature"] is None:
            return {"temperature": training_temperature(model, self.train_set, self.device)}
        return calibration


class RowsTask(Task):
    """The row reader's: fresh synthetic rows of the training digits every step, CTC over them.

    An epoch is as many rows as there are training digits; row ``i`` of epoch ``e`` is drawn from
    the seed, ``e`` and ``i`` alone. The held-out digits make :data:`HELD_OUT_ROWS` rows, the same
    every epoch: ``val_accuracy`` is the share read exactly, and they fit the temperature of the
    reader's digits.
    """

    name = "rows"
    kind = ROWS_KIND
    uses = frozenset({"flagged_ones"})
    held_out = True

    def __init__(self, recipe: Recipe, digits: data.Digits, seed: int, device: torch.device, *, watch: data.Digits | None = None,
                 measured: bool = True):
        from digitrec.synthetic import rows

        self.recipe, self.device, self.seed, self.watched = recipe, device, seed, None
        flagged = variants.flag_ones(digits.images, digits.labels, recipe.flagged_ones, seed)
        if measured:
            train_index, val_index = data.holdout_split(digits.labels, recipe.validation, seed, recipe.split)
        else:
            train_index, val_index = np.arange(len(digits)), np.arange(0)
        self.digits, self.labels = flagged[train_index], digits.labels[train_index]
        self.examples = len(train_index)
        self.trained_on = {"name": digits.name, "checksum": digits.checksum, "count": len(train_index)}
        self.meta = {"kind": self.kind, "preprocessing": {"input": "a row of ink 28 px high (digitrec.images.Page.row), ink 1"},
                     "labels": [*(str(d) for d in range(10)), "blank"]}
        rng = np.random.default_rng(HELD_OUT_SEED)
        self.held = [rows.row(rng, flagged[val_index], digits.labels[val_index])
                     for _ in range(min(HELD_OUT_ROWS, len(val_index)))]

    def inputs(self, generator: torch.Generator, batch: torch.Tensor, mine: torch.Tensor, epoch: int,
               group: Group) -> tuple[torch.Tensor, Any, int]:
        from digitrec.synthetic import rows

        made = [rows.row(np.random.default_rng([self.seed, epoch, int(i)]), self.digits, self.labels) for i in mine]
        x = torch.from_numpy(rows.stacked([r for r, _ in made])).to(self.device)
        return x.contiguous(memory_format=torch.channels_last), [text for _, text in made], 0

    def loss(self, logits: torch.Tensor, texts: Any, net: nn.Module, batch: int, shared: int, group: Group) -> torch.Tensor:
        return _ctc(logits, texts) * (len(texts) * group.size / batch)

    def hits(self, logits: torch.Tensor, texts: Any) -> torch.Tensor:
        found = logits.detach().float().cpu().numpy()
        return torch.tensor(sum(_spelled(one) == text for one, text in zip(found, texts, strict=True)))

    def measure(self, model: nn.Module, row: dict[str, Any], group: Group) -> dict[str, Any]:
        model.eval()
        with torch.inference_mode():
            found = [model(torch.from_numpy(r)[None, None].to(self.device)).float() for r, _ in self.held]
            texts = [text for _, text in self.held]
            loss = float(torch.stack([_ctc(logits, [text]) for logits, text in zip(found, texts, strict=True)]).mean())
        found_np = [logits[0].cpu().numpy() for logits in found]
        row.update(val_loss=loss, val_accuracy=float(np.mean([_spelled(f) == t for f, t in zip(found_np, texts, strict=True)])))
        chosen, truth = [], []
        for logits, text in zip(found_np, texts, strict=True):  # the digits of the rows read with the right number of them
            frames = digit_frames(logits)
            if len(frames) == len(text):
                chosen += [logits[:BLANK, t] for t in frames]
                truth += [int(c) for c in text]
        return {"temperature": fit_temperature(np.array(chosen), np.array(truth)) if chosen else 1.0}


class DetectorTask(Task):
    """The digit detector's: the training digits as they are and drawn on pages, against as many pages of other things
    and :mod:`digitrec.outliers`' shapes, one score each (binary cross-entropy, both classes weighted alike), shifted by
    up to 2 px and sometimes blurred.

    The pages are drawn once, from the seed, when the run starts or resumes. The held-out digits
    as they are set the threshold: the score that only :data:`FLAG_SHARE` of them exceed. Pages of
    held-out digits and of other things (:data:`HELD_OUT_ROWS` of each) give ``val_accuracy``: the
    share of them told right at that threshold.
    """

    name = "detector"
    kind = DETECTOR_KIND
    uses = frozenset()
    held_out = True
    PAGES = 0.72  # pages of digits, and as many of other things, for every training digit (36,000 for MNIST's 50,000)
    CHUNKS = 4  # runs of pages of each kind, each with a seed of its own
    FLAG_SHARE = 0.0005  # the share of held-out digits the threshold flags: 1 in 2,000

    def __init__(self, recipe: Recipe, digits: data.Digits, seed: int, device: torch.device, *, watch: data.Digits | None = None,
                 measured: bool = True):
        from digitrec.synthetic.pages import pages

        self.recipe, self.device, self.watched = recipe, device, None
        if measured:
            train_index, val_index = data.holdout_split(digits.labels, recipe.validation, seed, recipe.split)
        else:
            train_index, val_index = np.arange(len(digits)), np.arange(0)
        learned = digits.images[train_index]
        count = round(self.PAGES * len(learned)) // self.CHUNKS
        # runs of digits and of others in turn, in this process: worker processes forked after PyTorch has run may hang
        made = [pages(count, [seed, i], learned if i % 2 == 0 else None) for i in range(2 * self.CHUNKS)]
        positives = np.concatenate([learned, *made[0::2]])
        others = np.concatenate([*made[1::2], outliers.bank(count * self.CHUNKS // 4, seed).numpy()])
        self.images = torch.from_numpy(np.concatenate([positives, others])).to(device)
        self.y = torch.cat([torch.zeros(len(positives)), torch.ones(len(others))]).to(device)
        self.weight = torch.where(self.y > 0, len(positives) / max(len(others), 1), 1.0)
        self.examples = len(self.y)
        self.trained_on = {"name": digits.name, "checksum": digits.checksum, "count": len(train_index),
                           "digits": len(positives), "others": len(others)}
        self.meta = {"kind": self.kind, "labels": ["not a digit"]}
        held = min(HELD_OUT_ROWS, len(val_index))
        self.threshold_digits = digits.images[val_index]
        held_digits, held_others = pages(held, [HELD_OUT_SEED, 0], self.threshold_digits), pages(held, [HELD_OUT_SEED, 1])
        self.held_pages = np.concatenate([held_digits, held_others])
        self.held_truth = np.concatenate([np.zeros(len(held_digits)), np.ones(len(held_others))])

    @classmethod
    def epoch_examples(cls, digits: int) -> int:
        pages = round(cls.PAGES * digits)
        return digits + 2 * pages + pages // 4

    def inputs(self, generator: torch.Generator, batch: torch.Tensor, mine: torch.Tensor, epoch: int,
               group: Group) -> tuple[torch.Tensor, Any, int]:
        x = self.images[mine].unsqueeze(1).float().div_(255)
        shift = torch.randint(-2, 3, (2,), generator=generator)
        x = torch.roll(x, (int(shift[0]), int(shift[1])), (2, 3))
        if torch.rand((), generator=generator) < 0.3:
            x = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)
        return x.contiguous(memory_format=torch.channels_last), mine, 0

    def loss(self, scores: torch.Tensor, mine: Any, net: nn.Module, batch: int, shared: int, group: Group) -> torch.Tensor:
        each = F.binary_cross_entropy_with_logits(scores[:, 0], self.y[mine], reduction="none") * self.weight[mine]
        return each.mean() * (len(mine) * group.size / batch)

    def hits(self, scores: torch.Tensor, mine: Any) -> torch.Tensor:
        return ((scores[:, 0] > 0) == (self.y[mine] > 0)).sum()

    def measure(self, model: nn.Module, row: dict[str, Any], group: Group) -> dict[str, Any]:
        threshold = float(np.quantile(_logits(model, self.threshold_digits, self.device, group)[:, 0], 1 - self.FLAG_SHARE))
        if len(self.held_pages):
            scores = _logits(model, self.held_pages, self.device, group)[:, 0]
            truth = torch.from_numpy(self.held_truth).float()
            row.update(val_loss=float(F.binary_cross_entropy_with_logits(torch.from_numpy(scores), truth)),
                       val_accuracy=float(np.mean((scores > threshold) == (self.held_truth > 0))))
        return {"threshold": threshold}


TASKS: dict[str, type[Task]] = {task.name: task for task in (Task, RowsTask, DetectorTask)}


def of_model(architecture: str) -> type[Task]:
    """The task a registered architecture learns."""
    return TASKS[models.REGISTRY[architecture].task]


def check(architecture: str, recipe: Recipe, watch: str | None) -> None:
    """Refuse, before anything is written, a recipe field or a watched set that the architecture's task would ignore."""
    task = of_model(architecture)
    if task is Task:
        return
    plain, jitter = Recipe(), [f.name for f in fields(Augment)]
    changed = [name for name in sorted(DIGIT_FIELDS - task.uses - {"augment"}) if getattr(recipe, name) != getattr(plain, name)]
    if "augment" not in task.uses:
        changed += [name for name in jitter if getattr(recipe.augment, name) != getattr(plain.augment, name)]
    if changed:
        raise DigitrecError(f"the {task.name} task does not use it ({architecture} learns no digits alone)", changed[0])
    if watch:
        raise DigitrecError(f"measures a digit model on test digits; {architecture} is not one", "watch")
    if task.held_out and not recipe.validation:
        raise DigitrecError(f"the {task.name} task measures and calibrates its model on held-out digits: give a share > 0",
                            "validation")


def build(architecture: str, recipe: Recipe, digits: data.Digits, seed: int, device: torch.device, *,
          watch: data.Digits | None = None, measured: bool = True) -> Task:
    """The task ``architecture`` learns, over these training digits; ``measured=False``: no held-out share (for timing)."""
    return of_model(architecture)(recipe, digits, seed, device, watch=watch, measured=measured)


def training_temperature(model: nn.Module, train_set: data.Digits, device: torch.device) -> float:
    """Calibrate on up to 10,000 training digits, unaugmented, when there is no held-out split.

    Measured on the default model: T = 0.41 from training digits against 0.44 that the test set
    itself would give, and the calibration error on the test set falls from 9.4 % to 0.2 %.
    """
    sample = np.random.default_rng(0).permutation(len(train_set))[:10_000]
    logits = predict_logits(model, train_set.images[sample], device=str(device)).numpy()
    return fit_temperature(logits, train_set.labels[sample])


def _logits(model: nn.Module, images: np.ndarray, device: torch.device, group: Group) -> np.ndarray:
    """The model's outputs for all uint8 ``(N, 28, 28)`` ``images``, each process computing its share."""
    part = predict_logits(model, images[group.share(len(images))], device=str(device))
    return distributed.gather_rows(part, len(images), group).numpy()


def _ctc(logits: torch.Tensor, texts: list[str]) -> torch.Tensor:
    """CTC's loss of ``(N, 11, T)`` logits against the texts of the rows, averaged over the rows (each over its length)."""
    log_probs = F.log_softmax(logits.float(), dim=1).permute(2, 0, 1)  # (T, N, 11), as ctc_loss takes it
    targets = torch.tensor([int(c) for text in texts for c in text])
    return F.ctc_loss(log_probs, targets, torch.full((len(texts),), log_probs.shape[0]), torch.tensor([len(t) for t in texts]),
                      blank=BLANK, zero_infinity=True)


def _spelled(logits: np.ndarray) -> str:
    """What a row's ``(11, T)`` logits read, greedily."""
    return "".join(str(d) for d in decode_row(logits).argmax(axis=1))

