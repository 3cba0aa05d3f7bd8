"""Running a trained model on 28x28 digits: PyTorch on a checkpoint, or ONNX Runtime on its export.

Both engines take uint8 ``(N, 28, 28)`` images (MNIST's format) and give float32 ``(N, 10)``
logits. The ONNX engine never loads PyTorch: importing torch alone takes 1.3 s on two CPU cores,
longer than ONNX Runtime needs to read all 10,000 MNIST test digits, so deployments, ``predict``
and ``evaluate`` use it when a current export is there.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from digitrec import rundir
from digitrec.choices import ENGINES
from digitrec.errors import DigitrecError
from digitrec.files import refuse_pickle
from digitrec.mnist_format import FIELD

if TYPE_CHECKING:
    import onnxruntime
    import torch
    from torch import nn

    from digitrec.checkpoint import Checkpoint

BUNDLED = Path(__file__).parent / "assets" / "default.onnx"  # the model that ships in the package (tools/bundle_model.py)
BATCH = 256  # batches of 256 keep a small CNN's activations in cache: 2.3x faster than 2000 on two cores
METADATA_KEY = "digitrec"


def resolve_device(device: str = "auto") -> str:
    """The device to run on: ``auto`` (CUDA, else Apple's MPS, else the CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    An unknown or absent device is a one-line error naming ``device``, never a PyTorch traceback.
    """
    kind, colon, index = str(device).partition(":")
    if kind not in ("auto", "cpu", "cuda", "mps") or (colon and (kind != "cuda" or not index.isdigit())):
        raise DigitrecError(f"unknown device {device!r}; choose auto, cpu, cuda, cuda:N or mps", "device")
    if kind == "cpu":
        return "cpu"
    import torch

    has_mps = torch.backends.mps.is_available()
    if kind == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if kind == "mps" and not has_mps:
        raise DigitrecError("Apple's MPS was asked for but this machine has none", "device")
    if kind == "cuda" and not torch.cuda.is_available():
        raise DigitrecError("CUDA was asked for but no CUDA device is available", "device")
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        raise DigitrecError(f"there is no {device}: this machine has {torch.cuda.device_count()} CUDA device(s)", "device")
    return str(device)


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def predict_logits(model: nn.Module, images: np.ndarray | torch.Tensor, batch_size: int = BATCH, device: str = "cpu") -> torch.Tensor:
    """Logits of a PyTorch model for uint8 ``(N, 28, 28)`` images, in batches, in eval mode.

    Model and input share the channels-last layout (mixing layouts made inference 1.6x slower).
    """
    import torch

    if isinstance(images, np.ndarray) and not images.flags.writeable:
        images = images.copy()  # torch warns about arrays it may not write to, though it only reads them
    images = torch.as_tensor(images)
    model.eval().to(memory_format=torch.channels_last)
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size].to(device, non_blocking=True)
            x = batch.unsqueeze(1).float().div_(255).contiguous(memory_format=torch.channels_last)
            outputs.append(model(x).float().cpu())
    return torch.cat(outputs) if outputs else torch.empty(0, 10)


class Engine:
    """A model ready to run: its digitrec metadata, where it came from, and ``logits(images)``."""

    kind = ""

    def __init__(self, source: Path, meta: dict[str, Any]):
        if meta.get("kind"):  # the row reader and the digit detector are trained as models are, but read no digit alone
            raise DigitrecError(f"a {meta['kind']}, not a digit model: digitrec uses it beside one "
                                "(predict's --rows or --detector)", str(source))
        self.source = source
        self.meta = meta

    @property
    def architecture(self) -> str:
        return self.meta.get("architecture", "unknown")

    @property
    def parameters(self) -> int | None:
        return self.meta.get("parameters")

    def logits(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class TorchEngine(Engine):
    kind = "torch"

    def __init__(self, source: Path, model: nn.Module, meta: dict[str, Any], device: str = "cpu"):
        super().__init__(source, meta)
        self.model = model.to(device)
        self.device = device

    @classmethod
    def open(cls, path: str | Path, device: str = "cpu", threads: int | None = None) -> TorchEngine:
        """``threads``, when given, sets PyTorch's intra-op threads for the whole process."""
        from digitrec import checkpoint  # PyTorch loads here, and only here

        if threads:
            import torch

            torch.set_num_threads(threads)

        path = checkpoint.resolve(path)
        return cls.of(checkpoint.load(path), path, device)

    @classmethod
    def of(cls, loaded: Checkpoint, source: Path, device: str = "cpu") -> TorchEngine:
        """An engine for a checkpoint already loaded (from a file, or from bytes in memory)."""
        from digitrec import models

        # checkpoints written before these were recorded get them from the registry
        meta = {"parameters": models.parameter_count(loaded.model), "reported": models.REGISTRY[loaded.architecture].reported,
                **loaded.meta}
        return cls(source, loaded.model, meta, device)

    def logits(self, images: np.ndarray) -> np.ndarray:
        return predict_logits(self.model, images, device=self.device).numpy()


def digitrec_metadata(properties: dict[str, str], source: str,
                      missing: str = "ONNX model without digitrec metadata; export it with `digitrec export`") -> dict[str, Any]:
    """The digitrec metadata (a JSON object) among an ONNX model's properties, or the one-line error ``missing``."""
    try:
        meta = json.loads(properties[METADATA_KEY])
    except (KeyError, json.JSONDecodeError):
        raise DigitrecError(missing, source) from None
    if not isinstance(meta, dict):
        raise DigitrecError(missing, source)
    return meta


def read_onnx_metadata(path: str | Path) -> dict[str, Any]:
    """An export's digitrec metadata, read with the onnx package alone: no ONNX Runtime session, no PyTorch."""
    import onnx

    try:
        model = onnx.load(path, load_external_data=False)
    except OSError as e:
        raise DigitrecError(f"cannot read ONNX file ({e.strerror or e})", str(path)) from None
    except Exception as e:  # protobuf raises its own DecodeError for files of other formats
        raise DigitrecError(f"not an ONNX model ({str(e).splitlines()[0][:200]})", str(path)) from None
    if not model.graph.node:  # an empty file parses as an empty model
        raise DigitrecError("not an ONNX model (no graph in it)", str(path))
    meta = digitrec_metadata({prop.key: prop.value for prop in model.metadata_props}, str(path))
    if "architecture" not in meta or not isinstance(meta.get("arguments"), dict):
        raise DigitrecError("ONNX model whose digitrec metadata has no architecture", str(path))
    return meta


def onnx_session(path: Path, threads: int | None = None) -> onnxruntime.InferenceSession:
    """ONNX Runtime on an ONNX file, on the CPU; ``threads``: intra-op threads (None: one per core)."""
    import onnxruntime

    if not path.is_file():
        raise DigitrecError("no such ONNX file", str(path))
    blob = path.read_bytes()
    refuse_pickle(blob, str(path), "ONNX models and .safetensors checkpoints")
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # ORT's warnings are for its developers, not ours
    if threads:
        options.intra_op_num_threads = threads
    # threads that spin between runs burn a core each while a server waits for its next request
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return onnxruntime.InferenceSession(blob, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own exception types for files it cannot parse
        raise DigitrecError(f"not a usable ONNX model ({str(e).splitlines()[0][:200]})", str(path)) from None


def onnx_asset(path: Path, kind: str, tool: str, threads: int | None = 1) -> tuple[onnxruntime.InferenceSession, dict[str, Any]]:
    """A model that works beside the digit model (the row reader, the digit detector): ONNX Runtime on its file (a run
    directory: its export) and its digitrec metadata, which must say it is a ``kind``; else a one-line error naming
    ``tool``, which writes one."""
    if path.is_dir():
        path = path / rundir.EXPORT
    session = onnx_session(path, threads)
    not_one = f"not a digitrec {kind} ({tool} writes one)"
    meta = digitrec_metadata(session.get_modelmeta().custom_metadata_map, str(path), not_one)
    if meta.get("kind") != kind:
        raise DigitrecError(not_one, str(path))
    return session, meta


class OnnxEngine(Engine):
    kind = "onnx"

    def __init__(self, path: str | Path, threads: int | None = None):
        """``threads``: ONNX Runtime's intra-op threads (None: one per core, for batches; 1 for one digit at a time)."""
        path = Path(path)
        self.session = onnx_session(path, threads)
        meta = digitrec_metadata(self.session.get_modelmeta().custom_metadata_map, str(path))
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or list(inputs[0].shape[1:]) != [1, FIELD, FIELD]:
            raise DigitrecError(f"the model's input is not (N, 1, {FIELD}, {FIELD}) digits", str(path))
        self.input_name = inputs[0].name
        super().__init__(path, meta)

    def logits(self, images: np.ndarray) -> np.ndarray:
        outputs = [np.zeros((0, 10), np.float32)]
        for start in range(0, len(images), BATCH):
            x = np.asarray(images[start : start + BATCH], dtype=np.float32)[:, None] / np.float32(255)
            outputs.append(self.session.run(None, {self.input_name: x})[0])
        return np.concatenate(outputs)


def current_export(run_dir: Path, threads: int | None = None) -> OnnxEngine | None:
    """ONNX Runtime on a run directory's ``final.onnx``, when it was exported from its ``final.safetensors`` as it is now."""
    onnx_file, final = run_dir / rundir.EXPORT, run_dir / rundir.FINAL
    if not (onnx_file.is_file() and final.is_file()):
        return None
    try:
        import onnxruntime  # noqa: F401  (an optional speed-up: without it the checkpoint is used)
    except ImportError:
        return None
    try:
        engine = OnnxEngine(onnx_file, threads)
    except DigitrecError:
        return None
    return engine if engine.meta.get("exported_from_sha256") == file_digest(final) else None


def bundled_model(engine: str = "auto") -> Path:
    """The model that ships with digitrec: its ONNX export, or its checkpoint for PyTorch."""
    path = BUNDLED.with_suffix(".safetensors") if engine == "torch" else BUNDLED
    if not path.is_file():
        raise DigitrecError("this installation has no bundled model (`make model` builds it); name a model instead", "MODEL")
    return path


def open_engine(path: str | Path | None, engine: str = "auto", device: str = "cpu", threads: int | None = None) -> Engine:
    """An engine for a checkpoint, a run directory or an ONNX file; None: the bundled model.

    ``auto`` uses ONNX Runtime for an ``.onnx`` file and for a run directory whose export is
    current (on the CPU), PyTorch otherwise. ``threads``: the engine's intra-op threads (None:
    the library's default, one per core).
    """
    if engine not in ENGINES:
        raise DigitrecError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}", "engine")
    path = bundled_model("torch" if engine == "torch" or device not in ("cpu", "auto") else engine) if path is None else Path(path)
    onnx_file = path.suffix == ".onnx"
    if engine == "onnx" or onnx_file:
        if device not in ("cpu", "auto"):  # digitrec runs ONNX Runtime's CPU provider only
            raise DigitrecError(f"ONNX Runtime runs on the CPU here; {device!r} needs the torch engine and a checkpoint", "device")
        if onnx_file:
            if engine == "torch":
                raise DigitrecError("an ONNX file runs on ONNX Runtime; the torch engine needs the checkpoint", str(path))
            return OnnxEngine(path, threads)
    device = "cpu" if engine == "onnx" else resolve_device(device)
    if engine != "torch" and path.is_dir() and device == "cpu":
        export = current_export(path, threads)
        if export is not None:
            return export
        if engine == "onnx":
            raise DigitrecError("no current final.onnx in this run directory; make one with `digitrec export`", str(path))
    elif engine == "onnx":
        raise DigitrecError("the onnx engine needs an .onnx file or a run directory with final.onnx", str(path))
    return TorchEngine.open(path, device, threads)
