"""The REST API and the draw-a-digit page, as one FastAPI application over :class:`digitrec.predict.Predictor`.

The model is loaded once when the app is made. Reading an image runs in the app's one reading
thread, so a slow decode never stalls the event loop; ``digitrec serve --workers N`` runs N such
processes on one port to use N cores. Every bad request gets a 4xx answer with a JSON body
``{"error": "..."}`` that says what was wrong; no request can make the server answer with a
stack trace.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import time
import warnings
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from digitrec import images, predict
from digitrec.errors import DigitrecError

STATIC = Path(__file__).parent / "static"
MAX_BODY = 5_000_000  # bytes in one request
MAX_PIXELS = 40_000_000  # pixels in one decoded image: a 40 MP photo passes, a decompression bomb does not
BODY_TIMEOUT = 10.0  # seconds for a client to send its whole body
MAX_BATCH = 64  # inputs in one batch request
OPTIONS_VARIABLE = "DIGITREC_SERVE"  # how `digitrec serve --workers N` hands create_app's options to each worker process


class BadRequest(Exception):
    """A request that cannot be answered, with its HTTP status: always a 4xx."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _body(request: Request, limit: int, timeout: float) -> bytes:
    """The whole request body, refused past ``limit`` bytes (413) or ``timeout`` seconds (408)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, f"the request body is {int(declared):,} bytes; the limit is {limit:,}")
    chunks: list[bytes] = []
    size = 0

    async def receive() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BadRequest(413, f"the request body is over the limit of {limit:,} bytes")
            chunks.append(chunk)

    try:
        await asyncio.wait_for(receive(), timeout)
    except TimeoutError:
        raise BadRequest(408, f"the request body did not arrive within {timeout:g} s") from None
    return b"".join(chunks)


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


class Reader:
    """Turns request bodies into inputs for the predictor and readings into JSON."""

    def __init__(self, reader: predict.Predictor, model_name: str, max_pixels: int):
        self.reader = reader
        self.model_name = model_name
        self.max_pixels = max_pixels

    def image(self, blob: bytes, name: str) -> bytes:
        """Encoded image bytes, checked for size from the header alone before anything is decoded."""
        if not blob:
            raise BadRequest(400, f"{name}: the image is empty")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(blob)) as opened:
                    width, height = opened.size
        except Image.DecompressionBombError:
            raise BadRequest(413, f"{name}: the image has more pixels than the {self.max_pixels:,} accepted") from None
        except Exception:  # Pillow's own errors for bytes it cannot identify
            raise BadRequest(400, f"{name}: not a readable image (PNG, JPEG, GIF, BMP, WebP or TIFF)") from None
        if width * height > self.max_pixels:
            raise BadRequest(413, f"{name}: the image is {width}x{height} pixels, more than the {self.max_pixels:,} accepted")
        return blob

    @staticmethod
    def pixels(value: Any, name: str) -> np.ndarray:
        """One digit given as JSON pixels: 28 rows of 28 numbers (or 784), levels 0-255 or fractions 0-1."""
        if not isinstance(value, list):
            raise BadRequest(400, f"{name}: 'pixels' must be a list of 28 rows of 28 numbers")
        try:
            array = np.asarray(value, dtype=np.float64)
        except (ValueError, TypeError):
            raise BadRequest(400, f"{name}: 'pixels' must be 28 rows of 28 numbers") from None
        if array.shape not in ((28, 28), (784,)):
            raise BadRequest(400, f"{name}: 'pixels' has shape {array.shape}; expected 28 rows of 28 numbers (or 784 numbers)")
        try:
            return images.digit_batch(array)[0]
        except DigitrecError as e:
            raise BadRequest(400, f"{name}: {e.reason}") from None

    def prepare(self, kind: str, value: Any, name: str) -> Any:
        """What the predictor reads for one input of a request: checked image bytes, or a digit from JSON pixels."""
        if kind == "image":
            return self.image(value, name)
        if not isinstance(value, dict) or "pixels" not in value:
            raise BadRequest(400, f"{name}: expected a JSON object {{\"pixels\": [[...28 numbers...], ...28 rows]}}")
        return self.pixels(value["pixels"], name)

    def read(self, item: Any, name: str, multi: bool, preprocessed: bool) -> dict[str, Any]:
        started = time.perf_counter()
        (result,) = self.reader.read_each([item], multi=multi, names=[name])
        if isinstance(result, DigitrecError):
            raise BadRequest(400, f"{name}: {result.reason}")
        out = result.to_dict()
        out.pop("source")
        out["model"] = self.model_name
        if preprocessed and result.seen is not None:
            out["preprocessed"] = [_png_data_url(piece) for piece in result.seen]
        out["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 2)
        return out


def _png_data_url(digit: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(digit).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


async def _inputs(request: Request, body: bytes, batch: bool) -> list[tuple[str, str, Any]]:
    """The inputs a request carries, by its content type, as (name, kind, value): a raw image, multipart files, or JSON pixels."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            value = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BadRequest(400, f"malformed JSON ({e})") from None
        values = value if batch and isinstance(value, list) else [value]
        return [(f"item {i}" if batch else "pixels", "json", item) for i, item in enumerate(values)]
    if kind == "multipart/form-data":
        try:
            form = await MultiPartParser(request.headers, _once(body), max_files=MAX_BATCH, max_fields=MAX_BATCH).parse()
        except MultiPartException as e:
            raise BadRequest(400, f"malformed multipart form ({e.message})") from None
        try:
            files = [(upload.filename or key, "image", await upload.read()) for key, upload in form.multi_items()
                     if not isinstance(upload, str)]
        finally:
            await form.close()
        if not files:
            raise BadRequest(400, "the form holds no file: send the image in the field 'file'")
        return files
    if kind.startswith("image/") or kind == "application/octet-stream":
        return [("image", "image", body)]
    raise BadRequest(415, f"unsupported content type {kind or '(none)'!r}: send an image (image/png, image/jpeg...), "
                          "a multipart form with the field 'file', or JSON {\"pixels\": [...]}")


def create_app(model: str | Path | None = None, *, max_body: int = MAX_BODY, max_pixels: int = MAX_PIXELS,
               body_timeout: float = BODY_TIMEOUT, threshold: float = predict.UNCERTAIN_BELOW) -> FastAPI:
    """The page and the API over one model (None: the bundled one), loaded now."""
    loaded = predict.load(model, threshold=threshold, threads=1)
    meta = loaded.meta
    source = Path(loaded.engine.source)
    name = meta.get("name") or (source.parent.name if source.stem == "final" else source.name)  # a run is named by its folder
    reader = Reader(loaded, name, max_pixels)
    # One image read at a time per process: the work is CPU-bound and mostly holds the GIL, so more
    # threads only contend (measured: 8.4 ms of CPU per canvas with anyio's pool of 40 threads, 5.6 ms
    # with one). Processes (--workers) add cores.
    reading = ThreadPoolExecutor(1, thread_name_prefix="digitrec-read")

    async def off_the_loop(work: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(reading, work)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        reading.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="digitrec", description="Reads handwritten digits: draw one on the page, or POST an image.",
                  version=str(meta.get("versions", {}).get("digitrec", "")), lifespan=lifespan)

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, error: BadRequest) -> JSONResponse:
        return _error(error.status, str(error))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return _error(error.status_code, str(error.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return _error(422, f"{where}: {first.get('msg', 'invalid request')}")

    @app.get("/healthz", summary="liveness: ok once the model is loaded")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/model", summary="the loaded model's metadata")
    async def model_info() -> dict[str, Any]:
        provenance = meta.get("provenance", {})
        return {"name": name, "architecture": meta.get("architecture"), "parameters": meta.get("parameters"),
                "test_accuracy": provenance.get("test_accuracy"), "engine": loaded.engine.kind, "threshold": loaded.threshold,
                "metadata": meta}

    # The readings are plain JSON already: returned as responses, they skip FastAPI's encoder (70 us a reading)
    @app.post("/api/predict", summary="read one digit (or, with multi=true, a written number)", response_model=dict[str, Any])
    async def predict_one(request: Request, preprocessed: bool = False, multi: bool = False) -> JSONResponse:
        body = await _body(request, max_body, body_timeout)
        inputs = await _inputs(request, body, batch=False)
        if len(inputs) != 1:
            raise BadRequest(400, f"one image per request here ({len(inputs)} given); use /api/predict/batch for several")
        item_name, kind, value = inputs[0]
        return JSONResponse(await off_the_loop(lambda: reader.read(reader.prepare(kind, value, item_name), item_name, multi, preprocessed)))

    @app.post("/api/predict/batch", summary="read several images: one result per input, in order", response_model=dict[str, Any])
    async def predict_batch(request: Request, preprocessed: bool = False, multi: bool = False) -> JSONResponse:
        body = await _body(request, max_body, body_timeout)
        inputs = await _inputs(request, body, batch=True)
        if len(inputs) > MAX_BATCH:
            raise BadRequest(413, f"{len(inputs)} inputs; at most {MAX_BATCH} in one batch")

        def read_all() -> list[dict[str, Any]]:
            results = []
            for item_name, kind, value in inputs:
                try:
                    results.append(reader.read(reader.prepare(kind, value, item_name), item_name, multi, preprocessed))
                except BadRequest as e:  # one bad input gets its own error; the others are still read
                    results.append({"error": str(e), "status": e.status})
            return results

        return JSONResponse({"results": await off_the_loop(read_all)})

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def from_environment() -> FastAPI:
    """The app of one of `digitrec serve --workers N`'s processes, made with the options the command put in ``DIGITREC_SERVE``."""
    return create_app(**json.loads(os.environ[OPTIONS_VARIABLE]))
