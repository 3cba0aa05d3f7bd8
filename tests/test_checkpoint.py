"""Model files: one safetensors file carries a usable model; nothing else is ever loaded."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from digitrec import checkpoint, models
from digitrec.errors import DigitrecError


def _saved(tmp_path: Path, name: str = "seed001-cnn1") -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = models.create(name).eval()
    path = tmp_path / "model.safetensors"
    checkpoint.save(path, model, name, {}, metrics={"val_accuracy": 0.5})
    return path, model


def test_a_saved_model_loads_back_with_identical_outputs_and_metadata(tmp_path: Path):
    path, model = _saved(tmp_path)
    loaded = checkpoint.load(path)
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))
    assert loaded.architecture == "seed001-cnn1"
    assert loaded.meta["metrics"] == {"val_accuracy": 0.5}
    assert loaded.meta["labels"] == [str(d) for d in range(10)]
    assert "torch" in loaded.meta["versions"]
    assert not loaded.model.training


def test_a_run_directory_stands_for_its_final_checkpoint(tmp_path: Path):
    path, _ = _saved(tmp_path)
    path.rename(tmp_path / "final.safetensors")
    assert checkpoint.load(tmp_path).architecture == "seed001-cnn1"


def test_pickles_are_refused_without_being_unpickled(tmp_path: Path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    for name, write in (("evil.pt", lambda p: torch.save({"x": Exploit()}, p)),
                        ("evil.pkl", lambda p: p.write_bytes(pickle.dumps(Exploit())))):
        path = tmp_path / name
        write(path)
        with pytest.raises(DigitrecError, match="never unpickles"):
            checkpoint.load(path)
    assert not marker.exists()


def test_a_checkpoint_whose_header_length_looks_like_a_pickle_signature_still_loads(tmp_path: Path):
    path = tmp_path / "model.safetensors"
    model = models.create("seed001-cnn1")
    for padding in range(256):  # one header length in 256 starts the file with pickle's 0x80
        checkpoint.save(path, model, "seed001-cnn1", {}, note="x" * padding)
        if path.read_bytes()[:1] == b"\x80":
            break
    assert path.read_bytes()[:1] == b"\x80"
    assert checkpoint.load(path).meta["note"] == "x" * padding


@pytest.mark.parametrize("damage,message", [
    (lambda blob: blob[: len(blob) // 2], "damaged|truncated"),
    (lambda blob: b"\x07" * 5000, "not a safetensors file"),
    (lambda blob: b"", "too short"),
])
def test_damaged_files_are_refused_with_a_clear_error(tmp_path: Path, damage, message: str):
    path, _ = _saved(tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DigitrecError, match=message) as info:
        checkpoint.load(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_unknown_architecture_is_refused(tmp_path: Path):
    model = models.create("seed001-cnn1")
    path = tmp_path / "m.safetensors"
    checkpoint.save(path, model, "seed999-mystery", {})
    with pytest.raises(DigitrecError, match="unknown architecture 'seed999-mystery'"):
        checkpoint.load(path)


def test_weights_of_the_wrong_shape_are_refused(tmp_path: Path):
    path = tmp_path / "m.safetensors"
    checkpoint.save(path, models.create("seed001-cnn2"), "seed001-cnn1", {})  # 64 filters where 32 belong
    with pytest.raises(DigitrecError, match="has shape"):
        checkpoint.load(path)


def test_missing_file_and_plain_folder_are_refused(tmp_path: Path):
    with pytest.raises(DigitrecError, match="no such checkpoint"):
        checkpoint.load(tmp_path / "nope.safetensors")
    with pytest.raises(DigitrecError, match="not a run directory"):
        checkpoint.load(tmp_path)


def test_training_state_round_trips_nested_values_and_integer_keys(tmp_path: Path):
    state = {"epoch": 3, "optimizer": {"state": {0: {"step": torch.tensor(5.0), "buf": torch.ones(2)}},
                                       "param_groups": [{"lr": 0.1, "params": [0], "betas": (0.9, 0.99)}]},
             "rng": torch.get_rng_state(), "ema": None}
    checkpoint.save_state(tmp_path / "state.safetensors", state)
    back = checkpoint.load_state(tmp_path / "state.safetensors")
    assert back["epoch"] == 3 and back["ema"] is None
    assert torch.equal(back["optimizer"]["state"][0]["buf"], torch.ones(2))
    assert back["optimizer"]["param_groups"][0]["params"] == [0]
    assert torch.equal(back["rng"], state["rng"])
