"""Soak: 64 concurrent streaming clients against a live `parrot serve` for a long time.

    PYTHONPATH=src python benchmarks/bench_soak.py --minutes 10 [--clients 64]

Starts `parrot serve` (the real CLI, a subprocess on 127.0.0.1) over a tiny random-weight
model, then runs `--clients` threads that each stream /v1/completions requests back to
back (max_tokens drawn from 8..48, so requests start and end out of step) until the time
is up. Reports requests served and failed, the server's RSS after the warm-up and at the
end (growth must stay under 5%), and p50/p95/p99 of time to first token and of the gaps
between tokens. Writes benchmarks/results/bench_soak.json. There is no peer: this is a
stability measurement of parrot's own server (tests/serve/test_soak.py runs 2 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_soak.json"


def tiny_run_dir(path: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests" / "serve"))
    from serve_helpers import make_run_dir

    return make_run_dir(path, context_length=256)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run_dir: Path, clients: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "parrot", "serve", str(run_dir), "--port", str(port),
         "--name", "tiny", "--max-batch", "16", "--max-queue", str(clients),
         "--embedding-model", "none", "--quantize", "none"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except requests.ConnectionError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"parrot serve exited: {proc.stderr.read()[-2000:]}")
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("parrot serve did not become ready")


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.served = self.failed = 0
        self.ttft: list[float] = []
        self.itl: list[float] = []
        self.errors: list[str] = []
        self.recording = False

    def add(self, ok: bool, ttft: float | None, gaps: list[float], error: str = "") -> None:
        with self.lock:
            if not self.recording:
                return
            if ok:
                self.served += 1
                if ttft is not None:
                    self.ttft.append(ttft)
                self.itl.extend(gaps)
            else:
                self.failed += 1
                if len(self.errors) < 10:
                    self.errors.append(error)


def one_request(url: str, rng: random.Random, stats: Stats) -> None:
    body = {"model": "tiny", "prompt": "the quick brown fox", "stream": True,
            "max_tokens": rng.randint(8, 48), "ignore_eos": True, "temperature": 0.8}
    start, last, ttft, gaps = time.perf_counter(), None, None, []
    try:
        with requests.post(url + "/v1/completions", json=body, stream=True, timeout=120) as r:
            if r.status_code != 200:
                stats.add(False, None, [], f"HTTP {r.status_code}: {r.text[:200]}")
                return
            done = False
            for line in r.iter_lines():
                if not line.startswith(b"data: "):
                    continue
                if line == b"data: [DONE]":
                    done = True
                    break
                event = json.loads(line[6:])
                if "error" in event:
                    stats.add(False, None, [], str(event["error"])[:200])
                    return
                now = time.perf_counter()
                if ttft is None:
                    ttft = now - start
                else:
                    gaps.append(now - last)
                last = now
        stats.add(done, ttft, gaps, "" if done else "stream ended without [DONE]")
    except requests.RequestException as err:
        stats.add(False, None, [], f"{type(err).__name__}: {err}"[:200])


def soak(minutes: float, clients: int = 64, warmup_s: float = 20.0) -> dict:
    """Run the soak and return its figures (see the module docstring)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(tiny_run_dir(Path(tmp) / "run"), clients)
        stats, stop = Stats(), threading.Event()

        def client(i: int) -> None:
            rng = random.Random(i)
            while not stop.is_set():
                one_request(url, rng, stats)

        threads = [threading.Thread(target=client, args=(i,), daemon=True)
                   for i in range(clients)]
        try:
            for t in threads:
                t.start()
            time.sleep(warmup_s)
            rss_start, stats.recording = rss_mb(proc.pid), True
            t0 = time.monotonic()
            time.sleep(minutes * 60)
            rss_end, elapsed = rss_mb(proc.pid), time.monotonic() - t0
            stats.recording = False
            stop.set()
            for t in threads:
                t.join(timeout=150)
            load = requests.get(url + "/health", timeout=10).json()
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    def pct(values: list[float], q: float) -> float:
        return float(np.percentile(values, q)) * 1000 if values else float("nan")

    return {
        "minutes": minutes, "clients": clients, "warmup_s": warmup_s, "measured_s": elapsed,
        "served": stats.served, "failed": stats.failed, "errors": stats.errors,
        "requests_per_s": stats.served / elapsed, "tokens_streamed": len(stats.itl) + len(
            stats.ttft), "rss_start_mb": rss_start, "rss_end_mb": rss_end,
        "rss_growth_pct": 100 * (rss_end - rss_start) / rss_start,
        **{f"ttft_p{q}_ms": pct(stats.ttft, q) for q in (50, 95, 99)},
        **{f"itl_p{q}_ms": pct(stats.itl, q) for q in (50, 95, 99)},
        "health_after": load,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds before measuring")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    result = soak(args.minutes, args.clients, args.warmup)
    result["load_average_after"] = os.getloadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"{'minutes':>8} {'clients':>8} {'served':>8} {'failed':>7} {'req/s':>7} "
          f"{'RSS MB start→end':>18} {'growth':>7} {'TTFT p50/p95/p99 ms':>22} "
          f"{'ITL p50/p95/p99 ms':>20}")
    r = result
    print(f"{r['minutes']:8.1f} {r['clients']:8d} {r['served']:8d} {r['failed']:7d} "
          f"{r['requests_per_s']:7.2f} {r['rss_start_mb']:8.1f}→{r['rss_end_mb']:<8.1f} "
          f"{r['rss_growth_pct']:6.2f}% {r['ttft_p50_ms']:6.0f}/{r['ttft_p95_ms']:.0f}/"
          f"{r['ttft_p99_ms']:.0f} {r['itl_p50_ms']:8.1f}/{r['itl_p95_ms']:.1f}/"
          f"{r['itl_p99_ms']:.1f}")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
