"""Looking inside a model: feature maps of every convolution, and attributions that add up to the model's own logits."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_MNIST, run_cli, synthetic_digits
from PIL import Image

from digitrec import checkpoint, explain

REALWORLD = SHARED_MNIST.parent / "realworld-dev"


def test_every_convolution_shows_its_maps_after_its_activation_and_attributions_add_up(synthetic_run: Path):
    model = checkpoint.load(synthetic_run / "final.safetensors").model
    digits, labels = synthetic_digits(4, seed=5)
    explanations = explain.explain_digits(model, digits)
    convolutions = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Conv2d)]
    x = torch.tensor(digits).unsqueeze(1).float() / 255
    with torch.no_grad():
        logits, black = model(x), model(torch.zeros_like(x))
    for i, e in enumerate(explanations):
        assert [name for name, _ in e.layers] == convolutions
        assert all(maps.ndim == 3 and maps.min() >= 0 for _, maps in e.layers)  # after the ReLU that follows each convolution
        assert e.predicted == int(logits[i].argmax()) and e.attribution.shape == (28, 28)
        gap = float(logits[i, e.predicted] - black[i, e.predicted])
        assert e.attribution.sum() == pytest.approx(gap, rel=0.05)  # integrated gradients' completeness
    assert [e.predicted for e in explanations] == labels.tolist()  # the easy digits are read right


def test_explain_writes_maps_and_attributions_for_a_test_digit_and_a_real_image(tmp_path: Path, fast_mnist_run: Path):
    raw = gzip.decompress((SHARED_MNIST / "t10k-images-idx3-ubyte.gz").read_bytes())
    Image.fromarray(np.frombuffer(raw, np.uint8, offset=16)[:784].reshape(28, 28)).save(tmp_path / "mnist-test-0.png")
    real = sorted(REALWORLD.glob("7_*"))[0]
    out = tmp_path / "explained"
    result = run_cli("explain", str(fast_mnist_run), str(tmp_path / "mnist-test-0.png"), str(real), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"explanation: {out / 'explain.html'} (and explain.md beside it)"
    page = (out / "explain.html").read_text()
    layers = sum(isinstance(m, torch.nn.Conv2d) for m in checkpoint.load(fast_mnist_run / "final.safetensors").model.modules())
    assert page.count("data:image/png;base64,") == 1 + 2 * layers  # the attributions, and every layer's maps for each image
    markdown = (out / "explain.md").read_text()
    assert "mnist-test-0.png: read 7" in markdown and f"{real.name}: read 7" in markdown


def test_explain_refuses_what_it_cannot_read_in_one_line(tmp_path: Path):
    (tmp_path / "note.png").write_text("not an image")
    result = run_cli("explain", str(tmp_path / "note.png"), "--out", str(tmp_path / "out"))
    errors = [line for line in result.stderr.splitlines() if line.startswith("digitrec: error:")]
    assert result.returncode == 2 and len(errors) == 1 and "note.png: not a readable image" in errors[0]
    assert not (tmp_path / "out").exists()  # nothing written for an image that was not read
