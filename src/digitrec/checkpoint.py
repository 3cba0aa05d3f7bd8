"""Model files: safetensors weights with the JSON metadata needed to use them, nothing executable.

A checkpoint is one ``.safetensors`` file whose header metadata holds, under ``digitrec``, the
architecture and its arguments, preprocessing, label names, the training config and metrics,
the data checksum and library versions. Loading parses a JSON header and raw tensors only: a
pickle (``.pt``, ``.pth``, ``.pkl``) is refused, never unpickled, because unpickling runs code.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn

from digitrec import models, rundir
from digitrec.errors import DigitrecError
from digitrec.files import atomic_write, refuse_pickle

FORMAT = "digitrec-checkpoint"
FORMAT_VERSION = 1
PREPROCESSING = {"input": "28x28 grayscale, white ink on black (MNIST format)", "scale": "pixel / 255"}
LABELS = [str(d) for d in range(10)]
MAX_HEADER_BYTES = 100_000_000
WRITTEN = ("format", "format_version", "architecture", "arguments", "parameters", "reported", "versions")  # save's own


@dataclass
class Checkpoint:
    model: nn.Module
    meta: dict[str, Any]

    @property
    def architecture(self) -> str:
        return self.meta["architecture"]


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        own = version("digitrec")
    except PackageNotFoundError:
        own = "unknown"
    return {"digitrec": own, "torch": torch.__version__, "python": platform.python_version()}


def save(path: str | Path, model: nn.Module, architecture: str, arguments: dict[str, Any], **extra: Any) -> None:
    """Write ``model`` and its metadata atomically; ``extra`` lands in the metadata (config, metrics…)."""
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": architecture,
        "arguments": arguments,
        "parameters": models.parameter_count(model),
        "reported": models.REGISTRY[architecture].reported if architecture in models.REGISTRY else "",
        "preprocessing": PREPROCESSING,
        "labels": LABELS,
        "versions": library_versions(),
        **extra,
    }
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    blob = safetensors.torch.save(tensors, metadata={"digitrec": json.dumps(meta)})
    atomic_write(Path(path), blob)


def resave(path: str | Path, loaded: Checkpoint, **extra: Any) -> None:
    """Write a loaded checkpoint again: its metadata kept (but what :func:`save` writes afresh), ``extra`` added."""
    kept = {key: value for key, value in loaded.meta.items() if key not in WRITTEN}
    save(path, loaded.model, loaded.architecture, loaded.meta["arguments"], **{**kept, **extra})


def _refuse_non_safetensors(blob: bytes, source: str) -> None:
    header_size = int.from_bytes(blob[:8], "little")
    if len(blob) >= 8 and header_size <= min(len(blob) - 8, MAX_HEADER_BYTES) and blob[8:9] == b"{":
        return  # checked before the pickle signatures: a header of 128 + 256k bytes also starts with 0x80
    refuse_pickle(blob, source, ".safetensors checkpoints")
    if len(blob) < 8:
        raise DigitrecError(f"file is {len(blob)} bytes, too short to be a safetensors checkpoint", source)
    raise DigitrecError("not a safetensors file (no valid header); it is truncated or of another format", source)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The checkpoint's metadata without building the model."""
    return _parse(_read(path, "checkpoint"), str(path))[1]


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except IsADirectoryError:
        raise DigitrecError(f"is a folder, not a {what} file", str(path)) from None
    except OSError as e:
        raise DigitrecError(f"cannot read {what} ({e.strerror or e})", str(path)) from None


def _decode(blob: bytes, source: str, what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and header metadata of a safetensors file's bytes; any problem is one DigitrecError."""
    _refuse_non_safetensors(blob, source)
    try:
        tensors = safetensors.torch.load(blob)
        header = json.loads(blob[8 : 8 + int.from_bytes(blob[:8], "little")])
    except Exception as e:  # the safetensors parser raises its own error types for damaged files
        raise DigitrecError(f"damaged {what} ({str(e).splitlines()[0]})", source) from None
    return tensors, header.get("__metadata__") or {}


def _parse(blob: bytes, source: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, metadata = _decode(blob, source, "checkpoint")
    try:
        meta = json.loads(metadata["digitrec"])
    except (KeyError, TypeError, json.JSONDecodeError):
        raise DigitrecError("safetensors file without digitrec metadata (architecture, preprocessing)", source) from None
    if meta.get("format") != FORMAT or not isinstance(meta.get("arguments"), dict):
        raise DigitrecError("metadata is not a digitrec checkpoint's", source)
    return tensors, meta


def load(path: str | Path) -> Checkpoint:
    """Build the model a checkpoint (or a run directory's final one) describes, refusing anything that does not fit."""
    path = resolve(path)
    return from_bytes(_read(path, "checkpoint"), str(path))


def from_bytes(blob: bytes, source: str = "<checkpoint>") -> Checkpoint:
    """:func:`load` for a checkpoint's bytes already in memory (an estimator's weights); ``source`` names it in errors."""
    tensors, meta = _parse(blob, source)
    name = meta.get("architecture")
    if name not in models.REGISTRY:
        raise DigitrecError(f"unknown architecture {name!r}", source)
    try:
        model = models.create(name, **meta["arguments"])
    except TypeError as e:
        raise DigitrecError(f"bad arguments for {name}: {e}", source) from None
    expected = model.state_dict()
    for key, tensor in tensors.items():
        if key not in expected:
            raise DigitrecError(f"tensor {key!r} does not belong to {name}", source)
        if tensor.shape != expected[key].shape:
            shape, want = tuple(tensor.shape), tuple(expected[key].shape)
            raise DigitrecError(f"tensor {key!r} has shape {shape}, {name} needs {want}", source)
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise DigitrecError(f"{len(missing)} tensor(s) of {name} missing, first {missing[0]!r}", source)
    model.load_state_dict(tensors)
    model.eval()
    return Checkpoint(model, meta)


def resolve(path: str | Path) -> Path:
    """A checkpoint file, or a run directory's final checkpoint."""
    path = Path(path)
    if path.is_dir():
        final = path / rundir.FINAL
        if not final.is_file():
            raise DigitrecError("is a folder but not a run directory (no final.safetensors in it)", str(path))
        return final
    if not path.exists():
        raise DigitrecError("no such checkpoint file or run directory", str(path))
    return path


# --- training state for --resume: optimizer, schedule and RNG, flattened into safetensors ---


def _flatten(value: Any, tensors: dict[str, torch.Tensor], key: str) -> Any:
    if isinstance(value, torch.Tensor):
        tensors[key] = value.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(value, dict):
        return {"__dict__": [[_flatten(k, tensors, f"{key}.k{i}"), _flatten(v, tensors, f"{key}.{i}")]
                             for i, (k, v) in enumerate(value.items())]}
    if isinstance(value, list | tuple):
        return [_flatten(v, tensors, f"{key}.{i}") for i, v in enumerate(value)]
    return value


def _unflatten(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, dict) and "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if isinstance(value, dict) and "__dict__" in value:
        return {_unflatten(k, tensors): _unflatten(v, tensors) for k, v in value["__dict__"]}
    if isinstance(value, list):
        return [_unflatten(v, tensors) for v in value]
    return value


def save_state(path: str | Path, state: dict[str, Any]) -> None:
    """Save nested training state (tensors, numbers, strings) without pickle."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, tensors, "s")
    atomic_write(Path(path), safetensors.torch.save(tensors, metadata={"state": json.dumps(skeleton)}))


def load_state(path: str | Path) -> dict[str, Any]:
    tensors, metadata = _decode(_read(path, "training state"), str(path), "training state")
    try:
        return _unflatten(json.loads(metadata["state"]), tensors)
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise DigitrecError(f"damaged training state (no valid state record: {e})", str(path)) from None
