"""`digitrec serve`: the REST API against the real app, and the real server over HTTP on 127.0.0.1."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_digits
from PIL import Image

import digitrec

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from digitrec.server import create_app


@pytest.fixture(scope="module")
def model(synthetic_run: Path) -> Path:
    return synthetic_run


@pytest.fixture(scope="module")
def client(model: Path) -> TestClient:
    return TestClient(create_app(model, max_body=200_000, max_pixels=1_000_000))


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _canvas(digit: np.ndarray) -> bytes:
    """A digit drawn dark on a white 280x280 canvas, as the page sends it."""
    return _png(255 - np.asarray(Image.fromarray(digit).resize((280, 280))))


def _bomb_png(side: int) -> bytes:
    """A tiny PNG whose header claims side x side pixels: decoding it would take gigabytes."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)) + chunk(b"IEND", b"")


def test_health_and_model_metadata(client: TestClient, model: Path):
    assert client.get("/healthz").json() == {"status": "ok"}
    info = client.get("/api/model").json()
    assert info["architecture"] == "seed001-cnn1" and info["metadata"]["training"]["seed"] == 0
    assert info["name"] == model.name


def test_a_raw_image_a_form_upload_and_json_pixels_read_alike(client: TestClient, model: Path):
    digits, _ = synthetic_digits(3, seed=4)
    reader = digitrec.load(model)
    as_image, as_digit = reader.read(_png(digits[0]))[0], reader.read(digits[0])[0]
    raw = client.post("/api/predict", content=_png(digits[0]), headers={"Content-Type": "image/png"}).json()
    form = client.post("/api/predict", files={"file": ("d.png", _png(digits[0]), "image/png")}).json()
    pixels = client.post("/api/predict", json={"pixels": digits[0].tolist()}).json()
    for result, expected in ((raw, as_image), (form, as_image), (pixels, as_digit)):
        assert {"digit", "confidence", "uncertain", "reason", "probabilities", "top3", "model", "elapsed_ms"} <= set(result)
        assert result["digit"] == expected.digit and len(result["probabilities"]) == 10
        assert result["confidence"] == pytest.approx(expected.confidence, abs=1e-5)
    assert sum(raw["probabilities"]) == pytest.approx(1.0, abs=1e-4)


def test_preprocessed_shows_the_28x28_image_and_multi_reads_a_number(client: TestClient):
    digits, _ = synthetic_digits(3, seed=4)
    seen = client.post("/api/predict?preprocessed=true", content=_canvas(digits[0]), headers={"Content-Type": "image/png"}).json()
    (url,) = seen["preprocessed"]
    import base64

    image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert image.size == (28, 28)
    page = np.full((100, 300), 255, np.uint8)
    page[30:70, 30:40] = 0
    page[30:70, 150:160] = 0
    page[30:70, 250:260] = 0
    number = client.post("/api/predict?multi=true", content=_png(page), headers={"Content-Type": "image/png"}).json()
    assert len(number["number"]) == 3 and len(number["digits"]) == 3


def test_a_batch_answers_every_input_in_order_and_a_bad_one_alone_fails(client: TestClient):
    digits, _ = synthetic_digits(2, seed=4)
    files = [("files", ("a.png", _png(digits[0]), "image/png")), ("files", ("bad.png", b"not an image", "image/png")),
             ("files", ("b.png", _png(digits[1]), "image/png"))]
    results = client.post("/api/predict/batch", files=files).json()["results"]
    assert [("error" in r) for r in results] == [False, True, False]
    assert [(r["index"], r["name"]) for r in results] == [(0, "a.png"), (1, "bad.png"), (2, "b.png")]  # read or not
    assert "bad.png: not a readable image" in results[1]["error"]
    listed = client.post("/api/predict/batch", json=[{"pixels": digits[0].tolist()}, {"pixels": [[1, 2]]}]).json()["results"]
    assert "digit" in listed[0] and "shape (1, 2)" in listed[1]["error"]


def test_a_batch_over_the_limit_is_a_413_naming_the_limit_which_the_server_sets(client: TestClient, model: Path):
    digit = _png(np.zeros((2, 2), np.uint8))  # small: 300 of them stay under the body limit
    many = client.post("/api/predict/batch", files=[("files", (f"{i}.png", digit, "image/png")) for i in range(300)])
    assert many.status_code == 413
    assert many.json()["error"] == "300 inputs in one request; the limit is 64 (digitrec serve --max-batch)"
    small = TestClient(create_app(model, max_batch=3))
    four = small.post("/api/predict/batch", files=[("files", (f"{i}.png", digit, "image/png")) for i in range(4)])
    assert (four.status_code, four.json()["error"]) == (413, "4 inputs in one request; the limit is 3 (digitrec serve --max-batch)")
    assert small.post("/api/predict/batch", json=[{"pixels": [[0] * 28] * 28}] * 4).status_code == 413
    schema = small.get("/openapi.json").json()["paths"]["/api/predict/batch"]["post"]["requestBody"]["content"]
    assert schema["multipart/form-data"]["schema"]["properties"]["files"]["maxItems"] == 3


def test_a_form_field_of_text_where_a_file_belongs_names_the_routes_own_field(client: TestClient):
    for route, field in (("/api/predict", "file"), ("/api/predict/batch", "files")):
        response = client.post(route, files={field: (None, "hello")})
        assert response.status_code == 400
        assert f"its field '{field}' holds text, not a file" in response.json()["error"]
        assert f"-F {field}=@digit.png" in response.json()["error"]


NOISE = _png(np.random.default_rng(0).integers(0, 255, (100, 100), dtype=np.uint8))
BAD_REQUESTS = {
    "not an image": ({"content": b"hello", "headers": {"Content-Type": "image/png"}}, 400, "not a readable image"),
    "a truncated image": ({"content": NOISE[: len(NOISE) // 2], "headers": {"Content-Type": "image/png"}}, 400, "truncated"),
    "an empty body": ({"content": b"", "headers": {"Content-Type": "image/png"}}, 400, "empty"),
    "a wrong content type": ({"content": b"hello", "headers": {"Content-Type": "text/plain"}}, 415, "content type 'text/plain'"),
    "a plain form": ({"data": {"name": "x"}}, 415, "content type 'application/x-www-form-urlencoded'"),
    "malformed JSON": ({"content": b"{pixels: [", "headers": {"Content-Type": "application/json"}}, 400, "malformed JSON"),
    "JSON without pixels": ({"json": {"image": 1}}, 400, "expected a JSON object"),
    "a wrong array shape": ({"json": {"pixels": [[0] * 27] * 28}}, 400, "shape (28, 27)"),
    "a ragged array": ({"json": {"pixels": [[0] * 28, [0]]}}, 400, "28 rows of 28 numbers"),
    "values out of range": ({"json": {"pixels": [[300] * 28] * 28}}, 400, "expected levels 0-255 or fractions 0-1"),
    "NaN pixels": ({"content": b'{"pixels": [[NaN]]}', "headers": {"Content-Type": "application/json"}}, 400, "shape (1, 1)"),
    "a body over the limit": ({"content": b"\0" * 300_000, "headers": {"Content-Type": "image/png"}}, 413, "limit is 200,000"),
    "a decompression bomb": ({"content": _bomb_png(50_000), "headers": {"Content-Type": "image/png"}}, 413, "pixels"),
    "a form without a file": ({"files": {"name": (None, "x")}}, 400, "no file"),
    "a malformed form": ({"content": b"no boundary here", "headers": {"Content-Type": "multipart/form-data; boundary=xyz"}}, 400,
                         "malformed multipart form"),
}


@pytest.mark.parametrize(("request_args", "status", "message"), BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_a_bad_request_is_a_4xx_with_a_json_error_saying_what_is_wrong(client: TestClient, request_args: dict, status: int,
                                                                        message: str, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING):
        response = client.post("/api/predict", **request_args)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert not [record for record in caplog.records if "multipart" in record.name]  # the answer says it; the log stays quiet


def test_a_reading_process_that_dies_is_replaced_and_its_request_answered_503(model: Path):
    """A decoder that crashes (here: a reader killed) costs the requests in flight, never the server."""
    import multiprocessing
    import signal

    digits, _ = synthetic_digits(1, seed=5)
    headers = {"Content-Type": "image/png"}
    others = set(multiprocessing.active_children())  # other apps' readers
    with TestClient(create_app(model, workers=1)) as client:  # the app's lifespan: its reader starts with it
        assert client.post("/api/predict", content=_canvas(digits[0]), headers=headers).status_code == 200
        (reader,) = set(multiprocessing.active_children()) - others
        os.kill(reader.pid, signal.SIGKILL)
        reader.join(10)
        stopped = client.post("/api/predict", content=_canvas(digits[0]), headers=headers)
        assert stopped.status_code == 503 and "restarted" in stopped.json()["error"]
        again = client.post("/api/predict", content=_canvas(digits[0]), headers=headers)
        assert again.status_code == 200 and again.json()["digit"] in range(10)


def test_wrong_methods_and_paths_answer_json_errors(client: TestClient):
    assert client.get("/api/predict").status_code == 405 and "error" in client.get("/api/predict").json()
    assert client.get("/nowhere").status_code == 404 and "error" in client.get("/nowhere").json()
    assert client.post("/api/predict?multi=maybe", content=b"x", headers={"Content-Type": "image/png"}).status_code == 422


def test_the_page_and_its_files_are_served_with_openapi(client: TestClient):
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text and "aria-live" in page.text
    assert client.get("/static/app.js").status_code == 200
    assert "/api/predict" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200


def test_openapi_documents_every_field_a_client_sends(client: TestClient):
    paths = client.get("/openapi.json").json()["paths"]
    for route, field in (("/api/predict", "file"), ("/api/predict/batch", "files")):
        operation = paths[route]["post"]
        content = operation["requestBody"]["content"]
        assert field in content["multipart/form-data"]["schema"]["properties"]
        pixels = content["application/json"]["schema"]
        assert "pixels" in (pixels.get("items", pixels))["properties"]
        assert content["image/png"]["schema"]["format"] == "binary"
        assert {"multi", "preprocessed"} <= {parameter["name"] for parameter in operation["parameters"]}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_real_server_answers_over_http_and_times_out_a_slow_client(model: Path):
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "digitrec", "serve", str(model), "--port", str(port), "--timeout", "1",
                               "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # up to 30 s for start-up
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=1) as response:
                    assert json.load(response) == {"status": "ok"}
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()
                time.sleep(0.1)
        digits, _ = synthetic_digits(1, seed=4)
        request = urllib.request.Request(f"{base}/api/predict", data=_canvas(digits[0]), headers={"Content-Type": "image/png"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200 and json.load(response)["digit"] in range(10)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:  # promises 1000 bytes, sends 10
            slow.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
            answer = b""
            while not answer.endswith(b"}") and (chunk := slow.recv(4096)):
                answer += chunk
        answer = answer.decode()
        assert answer.startswith("HTTP/1.1 408") and "did not arrive within 1 s" in answer
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert "with 2 reading processes" in server.stderr.read().decode()


def test_a_bad_address_busy_port_or_worker_count_is_one_line_before_anything_loads(capsys: pytest.CaptureFixture):
    from digitrec import cli

    assert cli.main(["serve", "--port", "70000"]) == 2
    assert capsys.readouterr().err.strip() == "digitrec: error: --port: 70000 is not a port number (0-65535)"
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        assert cli.main(["serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"digitrec: error: --host/--port: cannot listen on 127.0.0.1:{port}")
    assert cli.main(["serve", "--port", "0", "--workers", "0"]) == 2
    assert capsys.readouterr().err.strip() == "digitrec: error: --workers: 0 workers: at least one process must read"


def test_a_served_model_reads_one_image_at_a_time_on_one_thread():
    """A server runs a process per core: a model that also spread each image over every core would fight the others."""
    options = digitrec.load(threads=1).engine.session.get_session_options()
    assert options.intra_op_num_threads == 1
