"""DigitClassifier: what a scikit-learn user relies on when digitrec sits in their pipeline."""

from __future__ import annotations

import importlib
import pickle
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_digits
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import cross_val_score

from digitrec.estimator import DigitClassifier
from digitrec.inference import BUNDLED

# The small fast net for one epoch in batches of 32: 16 steps on 500 images, about a second, 100 % on the synthetic digits.
QUICK = {"recipe": "fast", "batch_size": 32}


@pytest.fixture(scope="module")
def train_set() -> tuple[np.ndarray, np.ndarray]:
    return synthetic_digits(500, seed=1)


@pytest.fixture(scope="module")
def test_set() -> tuple[np.ndarray, np.ndarray]:
    return synthetic_digits(200, seed=2)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty working directory, to see that fitting with ``out=None`` leaves nothing in it."""
    return tmp_path_factory.mktemp("cwd")


@pytest.fixture(scope="module")
def system_temp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The system's temporary folder while the shared estimator is fitted, to see what a fit leaves there."""
    return tmp_path_factory.mktemp("tmp")


@pytest.fixture(scope="module")
def fitted(train_set: tuple[np.ndarray, np.ndarray], workdir: Path, system_temp: Path):
    """One estimator fitted with the defaults of ``out``, shared by the tests that only read it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        patch.setattr(tempfile, "tempdir", str(system_temp))
        return DigitClassifier(**QUICK).fit(*train_set)


def test_fit_returns_self_with_learned_attributes(fitted: DigitClassifier) -> None:
    assert isinstance(fitted, DigitClassifier)
    np.testing.assert_array_equal(fitted.classes_, np.arange(10))
    assert fitted.n_features_in_ == 784
    assert fitted.run_dir_ is None  # out=None keeps no run
    assert [row["epoch"] for row in fitted.history_] == [1]


def test_without_out_a_fit_leaves_nothing_on_disk(fitted: DigitClassifier, workdir: Path, system_temp: Path,
                                                  test_set: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(system_temp))
    fitted.predict(test_set[0][:5])
    pickle.loads(pickle.dumps(fitted)).predict(test_set[0][:5])
    assert list(workdir.iterdir()) == []
    assert list(system_temp.iterdir()) == []  # the run was trained in a temporary folder, deleted with the fit


def test_a_saved_estimator_loads_and_predicts_the_same_from_a_file_that_is_no_pickle(
        fitted: DigitClassifier, test_set: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    path = fitted.save(tmp_path / "clf.safetensors")
    blob = path.read_bytes()
    assert blob[8:9] == b"{" and not blob.startswith(b"\x80")  # a safetensors header, not a pickle's opcodes
    restored = DigitClassifier.load(path)
    np.testing.assert_allclose(restored.predict_proba(test_set[0]), fitted.predict_proba(test_set[0]), atol=1e-6)
    assert restored.get_params() == fitted.get_params()
    assert restored.history_ == fitted.history_ and restored.run_dir_ is None
    import digitrec

    np.testing.assert_array_equal(digitrec.load(path).predict(test_set[0]), fitted.predict(test_set[0]))  # any checkpoint reader


def test_load_refuses_a_pickle_and_a_checkpoint_that_is_no_estimator(fitted: DigitClassifier, tmp_path: Path) -> None:
    pickled = tmp_path / "clf.pkl"
    pickled.write_bytes(pickle.dumps(fitted))
    with pytest.raises(ValueError, match="pickle"):
        DigitClassifier.load(pickled)
    with pytest.raises(ValueError, match="not a saved DigitClassifier"):
        DigitClassifier.load(BUNDLED.with_suffix(".safetensors"))
    with pytest.raises(ValueError, match="cannot read it"):
        DigitClassifier.load(tmp_path / "missing.safetensors")


def test_predict_and_predict_proba_agree(fitted: DigitClassifier, test_set: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = test_set
    predicted = fitted.predict(images)
    probabilities = fitted.predict_proba(images)
    assert predicted.shape == (200,) and np.issubdtype(predicted.dtype, np.integer)
    assert probabilities.shape == (200, 10)
    assert (probabilities >= 0).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(fitted.classes_[probabilities.argmax(axis=1)], predicted)


def test_score_is_accuracy(fitted: DigitClassifier, test_set: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = test_set
    labels = labels.copy()
    labels[:50] = (labels[:50] + 1) % 10  # wrong on purpose, so the score is not trivially 1
    assert fitted.score(images, labels) == pytest.approx(np.mean(fitted.predict(images) == labels))


def test_it_learns(fitted: DigitClassifier, test_set: tuple[np.ndarray, np.ndarray]) -> None:
    assert fitted.score(*test_set) > 0.9  # held-out digits; chance is 0.1


@pytest.mark.parametrize("convert", [
    lambda x: x.reshape(-1, 784),
    lambda x: x.astype(np.float32) / 255,
    lambda x: (x.astype(np.float64) / 255).reshape(-1, 784),
    lambda x: x.astype(np.int64),
    lambda x: x.tolist(),
    lambda x: x.astype(np.float64),
    lambda x: x[:, None],
    lambda x: x[..., None],
    lambda x: np.repeat(x[..., None], 3, axis=3),
], ids=["rows of 784", "float32 in [0, 1]", "float64 rows in [0, 1]", "int64", "nested lists", "float levels 0-255",
        "(N, 1, 28, 28)", "(N, 28, 28, 1)", "grey as RGB"])
def test_every_input_format_predicts_the_same(fitted: DigitClassifier, test_set: tuple[np.ndarray, np.ndarray], convert) -> None:
    images, _ = test_set
    np.testing.assert_array_equal(fitted.predict_proba(convert(images)), fitted.predict_proba(images))


def test_parameters_round_trip(fitted: DigitClassifier) -> None:
    params = fitted.get_params()
    assert params == {"model": None, "recipe": "fast", "epochs": None, "lr": None, "batch_size": 32, "seed": 0, "out": None,
                      "device": "auto", "verbose": False}
    assert DigitClassifier(**params).get_params() == params
    other = DigitClassifier()
    assert other.set_params(model="seed001-cnn5", epochs=2, lr=0.01) is other
    assert other.get_params()["model"] == "seed001-cnn5" and other.epochs == 2 and other.lr == 0.01
    copy = clone(fitted)
    assert copy.get_params() == params
    with pytest.raises(NotFittedError):
        copy.predict(np.zeros((1, 28, 28), np.uint8))


def test_same_seed_same_model(fitted: DigitClassifier, train_set: tuple[np.ndarray, np.ndarray],
                              test_set: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    again = clone(fitted).set_params(out=tmp_path).fit(*train_set)
    np.testing.assert_allclose(again.predict_proba(test_set[0]), fitted.predict_proba(test_set[0]), atol=1e-6)


@pytest.mark.parametrize("method", ["predict", "predict_proba", "score"])
def test_using_it_before_fit_raises_not_fitted(method: str) -> None:
    images, labels = synthetic_digits(10)
    arguments = (images, labels) if method == "score" else (images,)
    with pytest.raises(NotFittedError):
        getattr(DigitClassifier(), method)(*arguments)


BAD_IMAGES = {
    "27x27 images": (np.zeros((10, 27, 27), np.uint8), r"\(N, 28, 28\).*got shape \(10, 27, 27\)"),
    "100 columns": (np.zeros((10, 100), np.uint8), r"\(N, 784\).*got shape \(10, 100\)"),
    "one image without a batch axis": (np.zeros((28, 28), np.uint8), r"X\[np.newaxis\]"),
    "NaN": (np.full((10, 784), np.nan), "NaN"),
    "pixels over 255": (np.full((10, 784), 300.0), r"run from 300 to 300; expected levels 0-255 or fractions 0-1"),
    "negative pixels": (np.full((10, 28, 28), -1), r"expected levels 0-255"),
}


@pytest.mark.parametrize("images, message", BAD_IMAGES.values(), ids=BAD_IMAGES.keys())
def test_bad_images_are_refused_with_a_clear_error(fitted: DigitClassifier, images: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DigitClassifier(**QUICK).fit(images, np.arange(10))
    with pytest.raises(ValueError, match=message):
        fitted.predict(images)


BAD_LABELS = {
    "label 10": (np.arange(1, 11), r"0-9; found \[10\]"),
    "label -1": (np.arange(-1, 9), r"0-9; found \[-1\]"),
    "fractions": (np.arange(10) + 0.5, r"0-9; found \[0.5, 1.5"),
    "NaN": (np.r_[np.arange(9.0), np.nan], "y contains NaN"),
    "strings": (np.array(list("0123456789")), r"integer digit labels.*astype\(int\)"),
    "one label too few": (np.arange(9), "inconsistent numbers of samples"),
    "a column, not a vector": (np.arange(10).reshape(10, 1), r"shaped \(N,\)"),
}


@pytest.mark.parametrize("labels, message", BAD_LABELS.values(), ids=BAD_LABELS.keys())
def test_bad_labels_are_refused_with_a_clear_error(labels: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DigitClassifier(**QUICK).fit(np.zeros((10, 28, 28), np.uint8), labels)


BAD_PARAMETERS = {
    "model and recipe": ({"model": "digitnet", "recipe": "fast"}, "not both"),
    "unknown model": ({"model": "resnet"}, "unknown model 'resnet'; `digitrec models` lists"),
    "ensemble": ({"model": "ensemble"}, "'ensemble' is combined from trained models"),
    "the row reader": ({"model": "rows"}, "'rows' is not a digit classifier"),
    "unknown recipe": ({"recipe": "turbo"}, "unknown preset 'turbo'; choose from fast, balanced, default"),
    "zero epochs": ({"recipe": "fast", "epochs": 0}, r"epochs: must be a whole number in \[1, inf\), got 0"),
    "fractional epochs": ({"recipe": "fast", "epochs": 1.5}, "epochs must be a whole number"),
}


@pytest.mark.parametrize("parameters, message", BAD_PARAMETERS.values(), ids=BAD_PARAMETERS.keys())
def test_bad_parameters_are_refused_at_fit(parameters: dict, message: str, tmp_path: Path) -> None:
    clf = DigitClassifier(**parameters, out=tmp_path)  # sklearn convention: the constructor only stores them
    with pytest.raises(ValueError, match=message):
        clf.fit(*synthetic_digits(10))
    assert list(tmp_path.iterdir()) == []


def test_cross_val_score(train_set: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    images, labels = train_set
    scores = cross_val_score(DigitClassifier(**QUICK, out=tmp_path), images[:300], labels[:300], cv=3)
    assert scores.shape == (3,)
    assert (scores > 0.5).all()
    assert len(list(tmp_path.iterdir())) == 3  # one run directory per fold, none overwritten


def test_out_keeps_every_run(train_set: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    images, labels = train_set
    clf = DigitClassifier(**QUICK, out=tmp_path / "runs")
    first = clf.fit(images[:200], labels[:200]).run_dir_
    second = clf.fit(images[:200], labels[:200]).run_dir_
    assert first != second
    for run_dir in (first, second):
        assert run_dir.parent == tmp_path / "runs"
        assert run_dir.name.startswith("digitnet-")
        assert (run_dir / "final.safetensors").is_file() and (run_dir / "config.json").is_file()


def test_pickled_estimator_predicts_even_after_its_run_directory_is_gone(train_set: tuple[np.ndarray, np.ndarray],
                                                                          test_set: tuple[np.ndarray, np.ndarray],
                                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the unpickled weights are written back, instead of /tmp
    images, labels = train_set
    clf = DigitClassifier(**QUICK, out=tmp_path).fit(images[:200], labels[:200])
    expected = clf.predict_proba(test_set[0])
    blob = pickle.dumps(clf)
    shutil.rmtree(clf.run_dir_)
    restored = pickle.loads(blob)
    # the same weights, now run by PyTorch from the pickled checkpoint where ONNX Runtime ran the run directory's export
    np.testing.assert_allclose(restored.predict_proba(test_set[0]), expected, atol=1e-4)
    assert restored.get_params() == clf.get_params()
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(restored)).predict(test_set[0]), expected.argmax(axis=1))


def test_without_scikit_learn_the_import_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in sys.modules if name == "sklearn" or name.startswith("sklearn.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "digitrec.estimator")
    with pytest.raises(ImportError, match=r"pip install 'digitrec\[sklearn\]'"):
        importlib.import_module("digitrec.estimator")


def test_real_mnist(mnist_dir: Path, tmp_path: Path) -> None:
    """6,000 real training digits, one fast epoch: well above 95 % on 2,000 test digits (96.6 % measured)."""
    from digitrec.data import load_mnist

    train, test = load_mnist("train", mnist_dir), load_mnist("test", mnist_dir)
    clf = DigitClassifier(**QUICK, out=tmp_path).fit(train.images[:6000], train.labels[:6000])
    assert clf.score(test.images[:2000], test.labels[:2000]) > 0.95
