"""The REST API and the draw-a-digit page, as one FastAPI application over :class:`digitrec.predict.Predictor`.

One process answers HTTP; reading images is CPU-bound Python that holds the GIL, so it runs in a
pool of reading processes (one per core by default), each with its own copy of the model, taking
inputs from one shared queue: every core reads, no reader idles while another has a backlog, and
a slow decode never stalls the event loop. Every bad request gets a 4xx answer with a JSON body
``{"error": "..."}`` that says what was wrong; no request can make the server answer with a
stack trace.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser, parse_options_header  # python-multipart's, either name

from digitrec import images, predict
from digitrec.errors import DigitrecError, TooLarge
from digitrec.mnist_format import FIELD, PIXELS

STATIC = Path(__file__).parent / "static"
MAX_BODY = 5_000_000  # bytes in one request
MAX_PIXELS = 40_000_000  # pixels in one decoded image: a 40 MP photo passes, a decompression bomb does not
BODY_TIMEOUT = 10.0  # seconds for a client to send its whole body
MAX_BATCH = 64  # inputs in one batch request


IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/bmp", "image/webp", "image/tiff", "application/octet-stream")


class Pixels(BaseModel):
    """One digit already in MNIST's format, sent as JSON."""

    pixels: list[list[float]] | list[float] = Field(
        description=f"{FIELD} rows of {FIELD} numbers (or {PIXELS} numbers), white ink on black: levels 0-255, or fractions "
                    "0-1 when no value exceeds 1")


def _request_body(batch: bool, max_batch: int = MAX_BATCH) -> dict[str, Any]:
    """The OpenAPI request body of a reading route: each way a client may send what :func:`_inputs` reads.

    The routes read their bodies themselves (within the size and time limits), so FastAPI is told here what they take.
    """
    binary = {"type": "string", "format": "binary"}
    field, upload = ("files", {"type": "array", "items": binary, "maxItems": max_batch}) if batch else ("file", binary)
    form = {"type": "object", "properties": {field: upload}, "required": [field]}
    pixels = Pixels.model_json_schema()
    content = {"multipart/form-data": {"schema": form},
               "application/json": {"schema": {"type": "array", "items": pixels, "maxItems": max_batch} if batch else pixels},
               **{kind: {"schema": binary} for kind in IMAGE_TYPES}}
    what = (f"up to {max_batch} images as a multipart form, or a JSON list of digits; one raw image is a batch of one" if batch
            else "one image: raw (its own content type), or as a multipart form; or one digit as JSON")
    return {"requestBody": {"required": True, "description": what, "content": content}}


class BadRequest(Exception):
    """A request that cannot be answered, with its HTTP status: always a 4xx."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status

    def __reduce__(self) -> tuple[type, tuple[int, str]]:  # raised in a reading process, re-raised in the server's
        return BadRequest, (self.status, str(self))


class ReaderStopped(Exception):
    """A reading process died under an input (killed, or a decoder crashed): 503, and the pool starts afresh."""

    def __str__(self) -> str:
        return "the reading process stopped while reading this input; it has been restarted: send it again"


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


def cores() -> int:
    """The cores this process may run on (a container's or taskset's share, not the machine's)."""
    return len(os.sched_getaffinity(0))


def _model_name(loaded: predict.Predictor) -> str:
    source = Path(loaded.engine.source)
    return loaded.meta.get("name") or (source.parent.name if source.stem == "final" else source.name)  # a run: its folder


class Reader:
    """Turns request bodies into inputs for the predictor and readings into JSON."""

    def __init__(self, reader: predict.Predictor, max_pixels: int):
        self.reader = reader
        self.model_name = _model_name(reader)
        self.max_pixels = max_pixels

    def image(self, blob: bytes, name: str) -> images.Page:
        """Encoded image bytes, decoded once; refused (413) from the header alone when they hold too many pixels."""
        if not blob:
            raise BadRequest(400, f"{name}: the image is empty")
        try:
            return images.Page.of(blob, max_pixels=self.max_pixels, source=name)
        except TooLarge as e:
            raise BadRequest(413, f"{name}: {e.reason}") from None
        except DigitrecError as e:
            raise BadRequest(400, f"{name}: {e.reason}") from None

    @staticmethod
    def pixels(value: Any, name: str) -> np.ndarray:
        """One digit given as JSON (:class:`Pixels`), as uint8 ``(28, 28)``."""
        try:
            given = Pixels.model_validate(value)
        except ValidationError as e:
            if not isinstance(value, dict) or any(error["type"] == "missing" for error in e.errors()):
                example = f"{{\"pixels\": [[...{FIELD} numbers...], ...{FIELD} rows]}}"
                raise BadRequest(400, f"{name}: expected a JSON object {example}") from None
            raise BadRequest(400, f"{name}: 'pixels' must be a list of {FIELD} rows of {FIELD} numbers") from None
        try:
            array = np.asarray(given.pixels, dtype=np.float64)
        except ValueError:  # rows of different lengths
            raise BadRequest(400, f"{name}: 'pixels' must be {FIELD} rows of {FIELD} numbers") from None
        if array.shape not in ((FIELD, FIELD), (PIXELS,)):
            raise BadRequest(400, f"{name}: 'pixels' has shape {array.shape}; expected {FIELD} rows of {FIELD} numbers "
                                  f"(or {PIXELS} numbers)")
        try:
            return images.digit_batch(array)[0]
        except DigitrecError as e:
            raise BadRequest(400, f"{name}: {e.reason}") from None

    def prepare(self, kind: str, value: Any, name: str) -> Any:
        """What the predictor reads for one input of a request: a decoded image, or a digit from JSON pixels."""
        return self.image(value, name) if kind == "image" else self.pixels(value, name)

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


def _too_many(count: int, max_batch: int) -> BadRequest:
    return BadRequest(413, f"{count} inputs in one request; the limit is {max_batch} (digitrec serve --max-batch)")


async def _inputs(request: Request, body: bytes, batch: bool, max_batch: int = MAX_BATCH) -> list[tuple[str, str, Any]]:
    """The inputs a request carries, by its content type, as (name, kind, value): a raw image, multipart files, or JSON pixels.

    More than ``max_batch`` of them is a 413 naming the limit, counted before a form is parsed.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    field = "files" if batch else "file"
    if kind == "application/json":
        try:
            value = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BadRequest(400, f"malformed JSON ({e})") from None
        values = value if batch and isinstance(value, list) else [value]
        if len(values) > max_batch:
            raise _too_many(len(values), max_batch)
        return [(f"item {i}" if batch else "pixels", "json", item) for i, item in enumerate(values)]
    if kind == "multipart/form-data":
        boundary = parse_options_header(request.headers.get("content-type", ""))[1].get(b"boundary", b"")
        parts = body.count(b"--" + boundary) - 1 if boundary else 0  # the closing delimiter repeats the boundary once more
        if parts > max_batch:
            raise _too_many(parts, max_batch)
        try:
            form = await MultiPartParser(request.headers, _once(body), max_files=max_batch, max_fields=max_batch).parse()
        except MultiPartException as e:
            raise BadRequest(400, f"malformed multipart form ({e.message})") from None
        try:
            files = [(upload.filename or key, "image", await upload.read()) for key, upload in form.multi_items()
                     if not isinstance(upload, str)]
            texts = [key for key, value in form.multi_items() if isinstance(value, str)]
        finally:
            await form.close()
        if not files:
            given = f"its field {texts[0]!r} holds text, not a file" if texts else "it holds no file"
            raise BadRequest(400, f"the form holds no file ({given}): send each image in the field '{field}' "
                                  f"(curl: -F {field}=@digit.png)")
        return files
    if kind.startswith("image/") or kind == "application/octet-stream":
        return [("image", "image", body)]
    raise BadRequest(415, f"unsupported content type {kind or '(none)'!r}: send an image (image/png, image/jpeg...), "
                          f"a multipart form with the field '{field}', or JSON {{\"pixels\": [...]}}")


_reader: Reader | None = None  # a reading process's own, made by _start_reading


def _start_reading(model: str | None, threshold: float, max_pixels: int) -> None:
    """Sets up a reading process: its copy of the model, run on one thread (the pool is the parallelism)."""
    global _reader
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the server's to handle: it stops the pool in order
    _reader = Reader(predict.load(model, threshold=threshold, threads=1), max_pixels)


def _read(kind: str, value: Any, name: str, multi: bool, preprocessed: bool) -> dict[str, Any]:
    """One input of a request, read in a reading process."""
    assert _reader is not None, "_start_reading sets up every reading process"
    return _reader.read(_reader.prepare(kind, value, name), name, multi, preprocessed)


def _ready() -> int:
    return os.getpid()


class _Readers:
    """The pool of reading processes: started with the app, each with its own model; a fresh pool when one dies."""

    def __init__(self, workers: int, options: tuple[str | None, float, int]):
        self.workers, self.options = workers, options
        self.pool: ProcessPoolExecutor | None = None

    def current(self) -> ProcessPoolExecutor:
        if self.pool is None:  # spawned, not forked: the server's threads and open sockets stay out of the readers
            self.pool = ProcessPoolExecutor(self.workers, multiprocessing.get_context("spawn"), _start_reading, self.options)
        return self.pool

    async def read(self, kind: str, value: Any, item_name: str, multi: bool, preprocessed: bool) -> dict[str, Any]:
        """One input of a request, read by the next free reading process."""
        current = self.current()
        try:
            return await asyncio.get_running_loop().run_in_executor(current, _read, kind, value, item_name, multi, preprocessed)
        except BrokenProcessPool:
            # a reading process died (killed, or a decoder crashed): the next request gets a fresh pool
            if self.pool is current:
                self.pool = None
                current.shutdown(wait=False, cancel_futures=True)
            raise ReaderStopped() from None

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        # every reading process started and its model loaded before the first request is taken
        await asyncio.gather(*(loop.run_in_executor(self.current(), _ready) for _ in range(self.workers)))
        yield
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _answer_errors_in_json(app: FastAPI) -> None:
    """Every error the app answers is a 4xx or 5xx with a JSON body ``{"error": "..."}``, never a page or a trace."""

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, error: BadRequest) -> JSONResponse:
        return _error(error.status, str(error))

    @app.exception_handler(ReaderStopped)
    async def reader_stopped(request: Request, error: ReaderStopped) -> JSONResponse:
        return _error(503, str(error))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return _error(error.status_code, str(error.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return _error(422, f"{where}: {first.get('msg', 'invalid request')}")


def _reading_routes(app: FastAPI, readers: _Readers, max_body: int, body_timeout: float, max_batch: int) -> None:
    """``POST /api/predict`` and ``/api/predict/batch``: bodies read within ``max_body`` bytes and ``body_timeout`` s, at most
    ``max_batch`` inputs a batch."""

    # The readings are plain JSON already: returned as responses, they skip FastAPI's encoder (70 us a reading)
    @app.post("/api/predict", summary="read one digit (or, with multi=true, a written number)", response_model=dict[str, Any],
              openapi_extra=_request_body(batch=False))
    async def predict_one(request: Request, preprocessed: bool = False, multi: bool = False) -> JSONResponse:
        body = await _body(request, max_body, body_timeout)
        inputs = await _inputs(request, body, batch=False)
        if len(inputs) != 1:
            raise BadRequest(400, f"one image per request here ({len(inputs)} given); use /api/predict/batch for several")
        item_name, kind, value = inputs[0]
        return JSONResponse(await readers.read(kind, value, item_name, multi, preprocessed))

    @app.post("/api/predict/batch", summary="read several images: one result per input, in order", response_model=dict[str, Any],
              openapi_extra=_request_body(batch=True, max_batch=max_batch))
    async def predict_batch(request: Request, preprocessed: bool = False, multi: bool = False) -> JSONResponse:
        body = await _body(request, max_body, body_timeout)
        inputs = await _inputs(request, body, batch=True, max_batch=max_batch)

        async def one(index: int, item_name: str, kind: str, value: Any) -> dict[str, Any]:
            given = {"index": index, "name": item_name}  # every result says which input it answers
            try:
                return {**given, **await readers.read(kind, value, item_name, multi, preprocessed)}
            except BadRequest as e:  # one bad input gets its own error; the others are still read
                return {**given, "error": str(e), "status": e.status}
            except ReaderStopped as e:
                return {**given, "error": str(e), "status": 503}

        # the inputs spread over the reading processes, and come back in order
        return JSONResponse({"results": await asyncio.gather(*(one(i, *item) for i, item in enumerate(inputs)))})


def create_app(model: str | Path | None = None, *, workers: int | None = None, max_body: int = MAX_BODY,
               max_pixels: int = MAX_PIXELS, body_timeout: float = BODY_TIMEOUT, max_batch: int = MAX_BATCH,
               threshold: float = predict.UNCERTAIN_BELOW) -> FastAPI:
    """The page and the API over one model (None: the bundled one), read by ``workers`` processes (None: one per core).

    The model is loaded here first, so that a bad one fails now, with one error; the reading
    processes start with the app (or at its first reading) and load their own copies.
    """
    for parser in ("python_multipart", "multipart"):  # it warns of every malformed form, which the 400 answer already names
        logging.getLogger(parser).setLevel(logging.ERROR)
    loaded = predict.load(model, threshold=threshold, threads=1)
    meta, name = loaded.meta, _model_name(loaded)
    workers = cores() if workers is None else workers
    if workers < 1:
        raise DigitrecError(f"{workers} workers: at least one process must read", "workers")
    if max_batch < 1:
        raise DigitrecError(f"{max_batch} inputs a batch: at least one must be allowed", "max_batch")
    readers = _Readers(workers, (None if model is None else str(Path(model).resolve()), threshold, max_pixels))
    app = FastAPI(title="digitrec", description="Reads handwritten digits: draw one on the page, or POST an image.",
                  version=str(meta.get("versions", {}).get("digitrec", "")), lifespan=readers.lifespan)
    app.state.workers = workers
    _answer_errors_in_json(app)

    @app.get("/healthz", summary="liveness: ok once the model is loaded")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/model", summary="the loaded model's metadata")
    async def model_info() -> dict[str, Any]:
        provenance = meta.get("provenance", {})
        return {"name": name, "architecture": meta.get("architecture"), "parameters": meta.get("parameters"),
                "test_accuracy": provenance.get("test_accuracy"), "engine": loaded.engine.kind, "threshold": loaded.threshold,
                "workers": workers, "metadata": meta}

    _reading_routes(app, readers, max_body, body_timeout, max_batch)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app

