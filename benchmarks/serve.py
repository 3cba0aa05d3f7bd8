"""Load-test `digitrec serve` from 127.0.0.1: requests/s, latency percentiles and counts per status.

    python benchmarks/serve.py                       # page traffic and real uploads, 20,000 requests each
    python benchmarks/serve.py --malformed 0.2       # with 20 % malformed requests mixed in
    python benchmarks/serve.py --soak 600            # a 10-minute soak of the mix, with the server's memory

The server runs in its own processes (the bundled model unless --model): one answers HTTP, and one
reading process per core (or --workers) reads the images. The load generator runs here, on the
same machine, with --clients concurrent clients opening one new connection per request.
It sends a bounded number of requests (or runs for --soak seconds) and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from digitrec import data

REALWORLD = Path(__file__).resolve().parents[2] / "shared" / "data" / "realworld-dev"
MALFORMED = [  # what clients get wrong: each must be a 4xx, never a 5xx
    ("image/png", b"this is not an image"),
    ("image/png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40),
    ("text/plain", b"7"),
    ("application/json", b'{"pixels": [[1, 2, 3]]}'),
    ("application/json", b"{not json"),
    ("application/json", b'{"pixels": [[999]]}'),
]


def canvas_pngs(count: int) -> list[bytes]:
    """MNIST test digits drawn dark on a white 280x280 canvas, as the page sends them."""
    test = data.load("mnist", "test")
    out = []
    for image in test.images[:count]:
        buffer = io.BytesIO()
        Image.fromarray(255 - np.asarray(Image.fromarray(image).resize((280, 280), Image.Resampling.BILINEAR))).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


def upload_files() -> list[bytes]:
    return [path.read_bytes() for path in sorted(REALWORLD.iterdir()) if path.suffix.lower() in (".png", ".jpg", ".jpeg")]


def request_bytes(port: int, content_type: str, body: bytes) -> bytes:
    head = (f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode() + body


async def one(port: int, payload: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(payload)
        await writer.drain()
        response = await reader.read()
        writer.close()
        status = int(response[9:12]) if response.startswith(b"HTTP/1.1 ") else 0
    except (OSError, ValueError):
        status = 0  # the connection failed: counted as an error
    return status, time.perf_counter() - started


async def load(port: int, good: list[bytes], bad: list[bytes], share: float, clients: int, requests: int | None,
               seconds: float | None) -> tuple[list, float]:
    """Requests from ``clients`` concurrent clients, a ``share`` of them malformed, until ``requests`` or ``seconds`` run out."""
    results: list[tuple[int, float]] = []
    sent = 0
    deadline = time.perf_counter() + seconds if seconds else None
    rng = random.Random(0)

    async def client() -> None:
        nonlocal sent
        while (requests is None or sent < requests) and (deadline is None or time.perf_counter() < deadline):
            sent += 1
            pool = bad if rng.random() < share else good
            results.append(await one(port, pool[rng.randrange(len(pool))]))

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return results, time.perf_counter() - started


def resident_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (the server and its reading processes)."""
    with open(f"/proc/{pid}/status") as f:
        own = next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024
    children = [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]
    return own + sum(resident_mb(child) for child in children)


def report(name: str, results: list[tuple[int, float]], wall: float) -> None:
    latencies = sorted(1000 * seconds for status, seconds in results if 200 <= status < 300)
    counts = Counter(status for status, _ in results)

    def percentile(q: float) -> str:
        return f"{latencies[min(len(latencies) - 1, int(q * len(latencies)))]:.1f}" if latencies else "-"

    print(f"| {name} | {len(results):,} | {len(results) / wall:,.0f} | {percentile(0.50)} | {percentile(0.95)} | {percentile(0.99)} | "
          f"{', '.join(f'{status}: {count:,}' for status, count in sorted(counts.items()))} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model to serve (default: the bundled one)")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, help="reading processes of the server (default: its own, one per core)")
    parser.add_argument("--malformed", type=float, default=0.0, help="share of malformed requests mixed in")
    parser.add_argument("--workloads", nargs="*", default=["page", "uploads"], choices=["page", "uploads"])
    parser.add_argument("--soak", type=float, metavar="SECONDS", help="run the mix this long instead, reporting the server's memory")
    args = parser.parse_args()

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "digitrec", "serve", *([args.model] if args.model else []), "--port", str(port),
               *(["--workers", str(args.workers)] if args.workers else [])]
    server = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        workloads = {"page": canvas_pngs(1000), "uploads": upload_files()}
        print(f"server pid {server.pid} on 127.0.0.1:{port}; {args.clients} clients, a new connection per request; "
              f"{os.cpu_count()} cores shared with the load generator")
        print("| workload | requests | requests/s | p50 ms | p95 ms | p99 ms | statuses |")
        print("|---|---|---|---|---|---|---|")
        for name in args.workloads:
            content_type = "image/png" if name == "page" else "application/octet-stream"
            good = [request_bytes(port, content_type, body) for body in workloads[name]]
            bad = [request_bytes(port, kind, body) for kind, body in MALFORMED]
            label = name + (f" + {args.malformed:.0%} malformed" if args.malformed else "")
            if args.soak:
                memory = []
                results, wall = [], 0.0
                started = time.perf_counter()
                while time.perf_counter() - started < args.soak:
                    part, seconds = asyncio.run(load(port, good, bad, args.malformed, args.clients, None, 60))
                    results += part
                    wall += seconds
                    memory.append(resident_mb(server.pid))
                    print(f"  minute {len(memory)}: {len(part) / seconds:,.0f} requests/s, server resident {memory[-1]:.1f} MB", flush=True)
                report(f"{label}, soak {args.soak:.0f} s", results, wall)
                print(f"server resident memory: {memory[0]:.1f} MB after the first minute, {memory[-1]:.1f} MB at the end "
                      f"({100 * (memory[-1] / memory[0] - 1):+.1f} %)")
            else:
                results, wall = asyncio.run(load(port, good, bad, args.malformed, args.clients, args.requests, None))
                report(label, results, wall)
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
