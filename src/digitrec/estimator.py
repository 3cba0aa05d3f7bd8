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
        so refitting, cross-validation and grid search never overwrite one. None: nothing is kept on
        disk; the run is trained in a temporary folder, deleted once its weights are in memory.
    device : ``auto``, ``cpu`` or ``cuda``, for training.
    verbose : print the per-epoch log and progress bars.

    Attributes
    ----------
    classes_ : the ten digits 0-9, the columns of ``predict_proba``. Always all ten, even when ``y`` lacks
        some: the network has ten outputs whatever it was shown.
    n_features_in_ : 784, the pixels of one image.
    run_dir_ : the run directory of the last fit (``digitrec evaluate run_dir_`` reports on it); None
        when ``out`` is None, and for an estimator from :meth:`load`.
    history_ : one dict of training metrics per epoch.
    predictor_ : the trained model opened for prediction (:func:`digitrec.predict.load`).

    :meth:`save` writes a fitted estimator as one safetensors file (its weights, and its parameters and
    history as JSON) and :meth:`load` reads it back: use these to keep or share one. Pickling works
    too (sklearn's tools pickle estimators between processes) and carries the weights, but unpickling
    a file runs whatever code it holds: never unpickle one you did not make. The training data are
    not kept, so a run cannot be resumed from either.
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
        """A new, empty run directory in ``out``: created atomically, so parallel fits (``n_jobs``) never share one."""
        root = Path(self.out)
        root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{model}-{datetime.now():%Y%m%d-%H%M%S}-", dir=root))

    def fit(self, X: Any, y: Any) -> DigitClassifier:
        """Train a new model on images ``X`` (white ink on black, as MNIST) labelled ``y``; returns self."""
        images = as_mnist_images(X, self)
        labels = as_digit_labels(y, len(images))
        plan = self._plan()
        from digitrec import training

        with tempfile.TemporaryDirectory(prefix="digitrec-") as scratch:
            data_file = Path(scratch) / "train.npz"
            np.savez(data_file, x_train=images, y_train=labels)
            run_dir = Path(scratch) / "run" if self.out is None else self._new_run_dir(plan.model)
            result = training.train(plan, data_spec=f"npz:{data_file}", out=run_dir, seed=self.seed,
                                    device=self.device, progress=self.verbose, log=print if self.verbose else _silent)
            # the checkpoint's bytes: kept when the run is not; read from the run when pickled or saved otherwise
            self._weights: bytes | None = (run_dir / FINAL).read_bytes() if self.out is None else None
        self.classes_ = np.arange(10)
        self.n_features_in_ = PIXELS
        self.run_dir_ = None if self.out is None else result.run_dir
        self.history_ = result.history
        self._predictor: Predictor | None = None
        return self

    @property
    def predictor_(self) -> Predictor:
        """The trained model ready to predict, opened on first use (and again after unpickling or loading)."""
        check_is_fitted(self)
        if self._predictor is None:
            from digitrec import checkpoint
            from digitrec.inference import TorchEngine
            from digitrec.predict import Predictor, load

            if self._weights is None:
                self._predictor = load(self.run_dir_)
            else:
                source = Path(f"<{type(self).__name__} weights>")
                self._predictor = Predictor(TorchEngine.of(checkpoint.from_bytes(self._weights, str(source)), source))
        return self._predictor

    def _checkpoint_bytes(self) -> bytes:
        return self._weights if self._weights is not None else (self.run_dir_ / FINAL).read_bytes()

    def save(self, path: str | Path) -> Path:
        """Write the fitted estimator to ``path`` (a ``.safetensors`` file): the weights, and as JSON its parameters and
        training history. ``digitrec predict``, ``evaluate`` and ``serve`` read the file as any checkpoint."""
        check_is_fitted(self)
        from digitrec import checkpoint

        params = {key: str(value) if isinstance(value, Path) else value for key, value in self.get_params().items()}
        loaded = checkpoint.from_bytes(self._checkpoint_bytes())
        checkpoint.resave(path, loaded, estimator={"class": type(self).__name__, "params": params, "history": self.history_})
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> DigitClassifier:
        """A fitted estimator from a file :meth:`save` wrote; it predicts as the saved one did. Nothing in the file is
        executed: it is read as safetensors and JSON, and a pickle is refused."""
        from digitrec import checkpoint
        from digitrec.errors import DigitrecError

        try:
            blob = Path(path).read_bytes()
        except OSError as e:
            raise ValueError(f"{path}: cannot read it ({e.strerror or e})") from None
        try:
            saved = checkpoint.from_bytes(blob, str(path)).meta.get("estimator")
        except DigitrecError as e:
            raise ValueError(str(e)) from None
        if not isinstance(saved, dict) or saved.get("class") != cls.__name__ or not isinstance(saved.get("params"), dict):
            raise ValueError(f"{path}: a digitrec checkpoint, but not a saved {cls.__name__} (digitrec.load reads it as a model)")
        estimator = cls(**{key: value for key, value in saved["params"].items() if key in cls._get_param_names()})
        estimator.classes_, estimator.n_features_in_ = np.arange(10), PIXELS
        estimator.run_dir_, estimator.history_ = None, list(saved.get("history") or [])
        estimator._weights, estimator._predictor = blob, None
        return estimator

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
        if "classes_" in state:
            state["_weights"] = self._checkpoint_bytes()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._predictor = None
