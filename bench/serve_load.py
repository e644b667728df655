"""A bounded load test of `foldertune serve` over loopback: throughput and p50 / p95 latency, zero errors expected.

    python bench/serve_load.py RUN                        # 500 requests, 8 at a time, one sample photo each
    python bench/serve_load.py RUN/export/model.onnx      # the same against an ONNX export
    python bench/serve_load.py                            # trains a 1-epoch run on the sample first (about 1 min)

Each request is `POST /predict` with one of the bundled sample photos (about 320x240 WebP, 20-60 kB), in turn.
The server is a fresh `foldertune serve` subprocess; the clients are threads in this process (urllib).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from foldertune.data import sample_data_path


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", help="run folder, checkpoint or .onnx (default: train one on the sample)")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="foldertune-load-")
    source = args.source
    if source is None:
        print("training a 1-epoch run on the sample photos ...", flush=True)
        subprocess.run([sys.executable, "-m", "foldertune", "train", "--epochs", "1", "--no-report", "--quiet",
                        "--project", scratch, "--name", "run"], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        source = str(Path(scratch) / "run")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "foldertune", "serve", source, "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(base + "/health", timeout=5).read()
                break
            except OSError:
                time.sleep(0.2)
        photos = sorted(sample_data_path().rglob("*.webp"))
        bodies = [multipart(p.name, p.read_bytes()) for p in photos]

        def one(number: int) -> tuple[float, bool]:
            body, content_type = bodies[number % len(bodies)]
            request = urllib.request.Request(base + "/predict", data=body, headers={"Content-Type": content_type})
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    ok = response.status == 200 and json.loads(response.read())["predictions"][0]["label"] is not None
            except OSError:
                ok = False
            return time.perf_counter() - started, ok

        for number in range(args.concurrency):  # warm-up, not counted
            one(number)
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            results = list(pool.map(one, range(args.requests)))
        wall = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    latencies = sorted(seconds for seconds, _ in results)
    errors = sum(not ok for _, ok in results)
    p50, p95 = statistics.median(latencies), latencies[int(0.95 * (len(latencies) - 1))]
    print(f"{source}: {args.requests} requests, {args.concurrency} at a time, {os.cpu_count()} CPU cores")
    print(f"throughput {args.requests / wall:.1f} requests/s; latency p50 {1000 * p50:.0f} ms, "
          f"p95 {1000 * p95:.0f} ms; errors {errors}")  # fmt: skip


if __name__ == "__main__":
    main()
