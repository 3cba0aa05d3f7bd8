"""``DigitClassifier``: digitrec's training and prediction as a scikit-learn estimator.

It puts digitrec's models into sklearn's tooling (``cross_val_score``, ``GridSearchCV``, ``Pipeline``,
joblib) without a second training loop: ``fit`` writes the arrays to a temporary Keras-style ``.npz``
and calls :func:`digitrec.training.train`, so every fit is an ordinary run directory (config, metrics,
checkpoints) that ``digitrec evaluate`` can read, and prediction goes through :mod:`digitrec.predict`.

>>> from digitrec.estimator import DigitClassifier
>>> clf = DigitClassifier(recipe="fast").fit(images, labels)     # (N, 28, 28) or (N, 784), labels 0-9
>>> clf.predict(more_images), clf.predict_proba(more_images), clf.score(more_images, more_labels)
"""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from digitrec.mnist_format import FIELD, PIXELS
from digitrec.rundir import FINAL

try:
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.utils import Tags
    from sklearn.utils.validation import check_array, check_consistent_length, check_is_fitted
except ImportError as e:  # scikit-learn is an optional extra, not a dependency of digitrec itself
    raise ImportError("digitrec.estimator needs scikit-learn: pip install 'digitrec[sklearn]'") from e

if TYPE_CHECKING:
    from digitrec.plans import Plan
    from digitrec.predict import Predictor

def as_mnist_images(X: Any, estimator: BaseEstimator | None = None) -> np.ndarray:
    """``X``, one digit per sample, as uint8 ``(N, 28, 28)`` images: the one format training and the predictor share.

    Accepts ``(N, 784)`` rows, ``(N, 28, 28)`` images, a channel axis first or last, or RGB, with
    the pixel rule that ``digitrec.predict`` and the HTTP API use (:func:`digitrec.images.as_pixels`):
    levels 0-255, or fractions 0-1 when no value exceeds 1, so ``images / 255`` predicts exactly as
    ``images``. Anything else is refused with a ValueError, as sklearn does.
    """
    from digitrec.errors import DigitrecError
    from digitrec.images import DIGIT_SHAPES, digit_batch

    X = check_array(X, dtype="numeric", allow_nd=True, input_name="X", estimator=estimator)
    if X.shape in ((FIELD, FIELD), (FIELD, FIELD, 1), (FIELD, FIELD, 3)):
        raise ValueError(f"X must hold one digit per sample, shaped (N, {PIXELS}) or (N, {FIELD}, {FIELD}); got shape {X.shape}; "
                         "one image is X[np.newaxis]")
    try:
        images = digit_batch(X)
    except DigitrecError as e:
        raise ValueError(f"X {e.reason}") from None
    if images is None:
        raise ValueError(f"X must be 28x28 digit images, one per sample: {DIGIT_SHAPES}; got shape {X.shape}")
    return images


def as_digit_labels(y: Any, count: int) -> np.ndarray:
    """``y`` as int64 digits 0-9, one per image; refuses anything that is not a digit label."""
    y = check_array(y, ensure_2d=False, dtype=None, input_name="y")
    if y.ndim != 1:
        raise ValueError(f"y must be one label per image, shaped (N,); got shape {y.shape}")
    check_consistent_length(np.empty(count), y)
    if y.dtype.kind not in "uif":
        raise ValueError(f"y must hold integer digit labels 0-9, got dtype {y.dtype}; convert e.g. with y.astype(int)")
    outside = sorted(set(np.unique(y).tolist()) - set(range(10)))  # 3.0 counts as 3, 2.5 is outside
    if outside:
        raise ValueError(f"y must hold digit labels 0-9; found {outside[:5]}")
    return y.astype(np.int64)


def _silent(line: str) -> None:
    """A training log that keeps quiet: sklearn estimators print nothing unless asked (``verbose``)."""


class DigitClassifier(ClassifierMixin, BaseEstimator):
    """A digit recogniser trained by digitrec, usable wherever sklearn takes a classifier.

    Parameters
    ----------
    model : a registered architecture (``digitrec models`` lists them), trained with its own recipe.
    recipe : a digitrec preset, ``fast``, ``balanced`` or ``default``: architecture, arguments and recipe
        chosen together. Give ``model`` or ``recipe``, not both (as ``digitrec train``); neither means ``default``.
    epochs, lr, batch_size : replace that field of the recipe; None keeps the recipe's own.
    seed : seeds the weights, the shuffling and the augmentation: equal seeds, equal models.
    out : a folder that keeps the runs: every ``fit`` makes a new run directory inside it (``run_dir_``),
        so refitting, cross-validation and grid search never overwrite one. None: a fresh temporary
        folder (``digitrec-*`` in the system's temporary directory), never ``runs/`` under the working directory.
    device : ``auto``, ``cpu`` or ``cuda``, for training.
    verbose : print the per-epoch log and progress bars.

    Attributes
    ----------
    classes_ : the ten digits 0-9, the columns of ``predict_proba``. Always all ten, even when ``y`` lacks
        some: the network has ten outputs whatever it was shown.
    n_features_in_ : 784, the pixels of one image.
    run_dir_ : the run directory of the last fit (``digitrec evaluate run_dir_`` reports on it).
    history_ : one dict of training metrics per epoch.
    predictor_ : the trained model opened for prediction (:func:`digitrec.predict.load`).

    A pickled fitted estimator carries its weights, so it predicts wherever it is unpickled, even once
    ``run_dir_`` is gone. The training data are not kept, so its run cannot be resumed.
    """

    def __init__(self, model: str | None = None, recipe: str | None = None, *, epochs: int | None = None, lr: float | None = None,
                 batch_size: int | None = None, seed: int = 0, out: str | Path | None = None, device: str = "auto",
                 verbose: bool = False):
        self.model = model
        self.recipe = recipe
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.seed = seed
        self.out = out
        self.device = device
        self.verbose = verbose

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True  # (N, 28, 28) images
        tags.input_tags.positive_only = True  # pixel intensities
        return tags

    def _plan(self) -> Plan:
        """What this estimator's parameters ask to train (checked at fit, as sklearn does), from the one resolver the CLI uses."""
        from digitrec import plans
        from digitrec.errors import DigitrecError

        if self.model is not None and self.recipe is not None:
            raise ValueError("give model (trained with its own recipe) or recipe (a digitrec preset), not both")
        for field in ("epochs", "batch_size"):
            value = getattr(self, field)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | np.integer)):
                raise ValueError(f"{field} must be a whole number, got {value!r}")
        try:
            plan = plans.resolve(self.model, self.recipe, epochs=None if self.epochs is None else int(self.epochs), lr=self.lr,
                                 batch_size=None if self.batch_size is None else int(self.batch_size))
        except DigitrecError as e:
            raise ValueError(str(e)) from None
        from digitrec import models

        if models.REGISTRY[plan.model].task != "digits":
            raise ValueError(f"model {plan.model!r} is not a digit classifier: it works beside one (digitrec train --model {plan.model})")
        return plan

    def _new_run_dir(self, model: str) -> Path:
        """A new, empty run directory: created atomically, so parallel fits (``n_jobs``) never share one."""
        if self.out is None:
            return Path(tempfile.mkdtemp(prefix="digitrec-"))
        root = Path(self.out)
        root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{model}-{datetime.now():%Y%m%d-%H%M%S}-", dir=root))

    def fit(self, X: Any, y: Any) -> DigitClassifier:
        """Train a new model on images ``X`` (white ink on black, as MNIST) labelled ``y``; returns self."""
        images = as_mnist_images(X, self)
        labels = as_digit_labels(y, len(images))
        plan = self._plan()
        from digitrec import training

        run_dir = self._new_run_dir(plan.model)
        with tempfile.TemporaryDirectory(prefix="digitrec-data-") as scratch:
            data_file = Path(scratch) / "train.npz"
            np.savez(data_file, x_train=images, y_train=labels)
            result = training.train(plan, data_spec=f"npz:{data_file}", out=run_dir, seed=self.seed,
                                    device=self.device, progress=self.verbose, log=print if self.verbose else _silent)
        self.classes_ = np.arange(10)
        self.n_features_in_ = PIXELS
        self.run_dir_ = result.run_dir
        self.history_ = result.history
        self._predictor: Predictor | None = None
        self._weights: bytes | None = None  # the checkpoint's bytes, once this estimator has been pickled and unpickled
        return self

    @property
    def predictor_(self) -> Predictor:
        """The trained model ready to predict, opened on first use (and again after unpickling)."""
        check_is_fitted(self)
        if self._predictor is None:
            from digitrec.predict import load

            self._predictor = load(self._model_source())
        return self._predictor

    def _model_source(self) -> Path:
        """The run directory, or a copy of the pickled weights where the run directory no longer holds them."""
        final = self.run_dir_ / FINAL
        if self._weights is None or (final.is_file() and final.read_bytes() == self._weights):
            return self.run_dir_
        copy = Path(tempfile.mkdtemp(prefix="digitrec-")) / FINAL
        copy.write_bytes(self._weights)
        return copy

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities ``(N, 10)`` of each digit; column ``i`` is ``classes_[i]``."""
        check_is_fitted(self)
        return self.predictor_.probabilities(as_mnist_images(X, self))  # a classifier: always a digit, ink or not

    def predict(self, X: Any) -> np.ndarray:
        """The most probable digit of each image: the argmax of ``predict_proba``, so the two always agree."""
        probabilities = self.predict_proba(X)  # first: it raises NotFittedError before classes_ is looked up
        return self.classes_[probabilities.argmax(axis=1)]

    def __getstate__(self) -> dict[str, Any]:
        """The parameters and learned attributes plus the checkpoint's bytes; never the open predictor."""
        state = dict(super().__getstate__())
        state.pop("_predictor", None)
        if "run_dir_" in state and state.get("_weights") is None:
            state["_weights"] = (self.run_dir_ / FINAL).read_bytes()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._predictor = None
