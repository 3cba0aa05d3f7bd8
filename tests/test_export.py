"""ONNX export: the same model, runnable by ONNX Runtime without PyTorch, refused when damaged or stale."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_MNIST, run_cli, synthetic_digits

from digitrec import checkpoint, data, models, plans, training
from digitrec.export import export_onnx
from digitrec.inference import OnnxEngine, TorchEngine, open_engine
from digitrec.metrics import log_softmax


def _quiet(_: str) -> None:
    pass


def _probabilities(logits: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(logits.astype(np.float64)))


def test_onnx_runtime_gives_the_same_digit_on_all_10000_test_images(fast_mnist_run: Path):
    """The issue's bar: same predicted digit everywhere, probabilities within 1e-4 of PyTorch's."""
    assert (fast_mnist_run / "final.onnx").is_file()  # training exports it
    test = data.load_mnist("test", SHARED_MNIST, download=False)
    torch_probabilities = _probabilities(TorchEngine.open(fast_mnist_run).logits(test.images))
    onnx_probabilities = _probabilities(OnnxEngine(fast_mnist_run / "final.onnx").logits(test.images))
    assert (torch_probabilities.argmax(1) == onnx_probabilities.argmax(1)).all()
    assert np.abs(torch_probabilities - onnx_probabilities).max() < 1e-4


@pytest.mark.parametrize("name", [name for name, spec in models.REGISTRY.items() if not spec.composite and spec.task == "digits"])
def test_every_digit_architecture_exports_and_runs_the_same_in_onnx_runtime(name: str, tmp_path: Path):
    torch.manual_seed(0)
    model = models.create(name).eval()
    checkpoint.save(tmp_path / "m.safetensors", model, name, {})
    onnx_file = export_onnx(tmp_path / "m.safetensors")
    assert onnx_file == tmp_path / "m.onnx"
    images = np.random.default_rng(0).integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    expected = TorchEngine.open(tmp_path / "m.safetensors").logits(images)
    exported = OnnxEngine(onnx_file)
    assert exported.meta["architecture"] == name and exported.meta["exported_from_sha256"]
    np.testing.assert_allclose(exported.logits(images), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("name", "width"), [("rows", 100), ("detector", 28)])
def test_the_row_reader_and_the_detector_export_with_their_own_input_and_output(name: str, width: int, tmp_path: Path):
    """The row reader's rows are as wide as a number is; the detector gives one score. ONNX Runtime agrees with PyTorch."""
    import onnxruntime

    torch.manual_seed(0)
    model = models.create(name).eval()
    checkpoint.save(tmp_path / "m.safetensors", model, name, {})
    session = onnxruntime.InferenceSession(str(export_onnx(tmp_path / "m.safetensors")), providers=["CPUExecutionProvider"])
    x = torch.rand(2, 1, 28, width)
    with torch.no_grad():
        expected = model(x).numpy()
    assert [i.name for i in session.get_inputs()] == list(models.REGISTRY[name].io)[:1]
    assert [o.name for o in session.get_outputs()] == list(models.REGISTRY[name].io)[1:]
    np.testing.assert_allclose(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0], expected, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("synthetic")
    x, y = synthetic_digits(400, seed=1)
    np.savez(folder / "digits.npz", x_train=x, y_train=y, x_test=x[:100], y_test=y[:100])
    training.train(plans.resolve("seed001-cnn1", epochs=2, lr=0.003), data_spec=f"npz:{folder / 'digits.npz'}", out=folder / "run",
                   progress=False, log=_quiet)
    return folder / "run", folder / "digits.npz"


def test_evaluating_an_export_never_imports_torch(synthetic_run: tuple[Path, Path]):
    run, npz = synthetic_run
    program = ("import sys, json\nfrom digitrec.report import evaluate_model\n"
               f"m = evaluate_model({str(run / 'final.onnx')!r}, 'npz:{npz}', write_report=False).metrics\n"
               "print(json.dumps({'engine': m['engine'], 'accuracy': m['accuracy'], 'torch': 'torch' in sys.modules}))")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["engine"] == "onnx" and outcome["torch"] is False and outcome["accuracy"] > 0.5


def test_a_run_directory_uses_its_export_only_while_it_matches_the_weights(synthetic_run: tuple[Path, Path], tmp_path: Path):
    run, npz = synthetic_run
    by_torch = json.loads(run_cli("evaluate", str(run), "--data", f"npz:{npz}", "--json", "--no-report", "--engine", "torch").stdout)
    by_onnx = json.loads(run_cli("evaluate", str(run), "--data", f"npz:{npz}", "--json", "--no-report").stdout)
    assert (by_torch["engine"], by_onnx["engine"]) == ("torch", "onnx")
    assert by_onnx["confusion_matrix"] == by_torch["confusion_matrix"]
    assert by_onnx["loss"] == pytest.approx(by_torch["loss"], rel=1e-4)

    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "final.onnx").write_bytes((run / "final.onnx").read_bytes())
    loaded = checkpoint.load(run / "final.safetensors")
    with torch.no_grad():
        next(loaded.model.parameters()).add_(0.5)  # new weights: the old export no longer describes them
    checkpoint.save(stale / "final.safetensors", loaded.model, loaded.architecture, loaded.meta["arguments"])
    assert open_engine(stale).kind == "torch"
    assert open_engine(run).kind == "onnx"


@pytest.mark.parametrize(("name", "content", "fragment"), [
    ("random.onnx", np.random.default_rng(0).bytes(3000), "not a usable ONNX model"),
    ("pickled.onnx", b"\x80\x04\x95" + b"\x00" * 50, "never unpickles"),
])
def test_damaged_onnx_files_are_refused_with_one_line(tmp_path: Path, synthetic_run: tuple[Path, Path], name: str, content: bytes,
                                                      fragment: str):
    (tmp_path / name).write_bytes(content)
    result = run_cli("predict", str(tmp_path / name), str(tmp_path / name))
    assert result.returncode == 2 and fragment in result.stderr and "Traceback" not in result.stderr


def test_a_truncated_export_is_refused(tmp_path: Path, synthetic_run: tuple[Path, Path]):
    run, npz = synthetic_run
    blob = (run / "final.onnx").read_bytes()
    (tmp_path / "cut.onnx").write_bytes(blob[: len(blob) // 2])
    result = run_cli("evaluate", str(tmp_path / "cut.onnx"), "--data", f"npz:{npz}")
    assert result.returncode == 2 and "cut.onnx" in result.stderr and "Traceback" not in result.stderr


def test_export_command_writes_the_file_predict_can_use(tmp_path: Path, synthetic_run: tuple[Path, Path]):
    run, _ = synthetic_run
    result = run_cli("export", str(run), "--onnx", str(tmp_path / "digits.onnx"))
    assert result.returncode == 0, result.stderr
    x, _ = synthetic_digits(1, seed=4)
    from PIL import Image

    Image.fromarray(x[0]).save(tmp_path / "d.png")
    on_onnx = run_cli("predict", str(tmp_path / "digits.onnx"), str(tmp_path / "d.png"), "--json")
    on_torch = run_cli("predict", str(run), str(tmp_path / "d.png"), "--json", "--engine", "torch")
    assert json.loads(on_onnx.stdout)["digit"] == json.loads(on_torch.stdout)["digit"]
    assert json.loads(on_onnx.stdout)["confidence"] == pytest.approx(json.loads(on_torch.stdout)["confidence"], abs=1e-4)
