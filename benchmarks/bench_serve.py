"""Server load test: 16 concurrent streaming clients x 8 requests vs the same 128 one at a time.

Starts `parrot serve` in a subprocess on 127.0.0.1 (loopback only) with a small random-weight
Llama-style model (or --model, anything `parrot serve` accepts, e.g. smollm2-135m-instruct),
then sends the same 128 streaming chat requests twice, in alternating slices (--rounds):

  sequential  one client, one request at a time (each request decodes alone)
  concurrent  16 clients at once (continuous batching shares the decode steps)

Every request generates exactly --max-tokens tokens (ignore_eos). Reports aggregate generated
tokens/s, p50/p95 time to first token, failures; writes benchmarks/results/serve.json and
prints a table with the concurrent/sequential ratio (target >= 4x).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
RESULTS = ROOT / "benchmarks" / "results" / "serve.json"


def make_model(folder: Path, d_model: int, n_layers: int) -> Path:
    """A run directory: BPE tokenizer trained on the embedded corpus, random Llama weights."""
    import torch

    from parrot.data.corpus import embedded_corpus
    from parrot.model import Transformer, get_preset
    from parrot.rundir import save_weights, write_config
    from parrot.tokenizer import Tokenizer

    torch.manual_seed(0)
    tok = Tokenizer.train(embedded_corpus()[:200], vocab_size=1024,
                          special_tokens=("<|im_start|>", "<|im_end|>"))
    cfg = get_preset("llama-tiny", vocab_size=tok.vocab_size, d_model=d_model,
                     n_layers=n_layers, n_heads=max(2, d_model // 64), n_kv_heads=None,
                     context_length=1024)
    write_config(folder, {"model": cfg.to_dict()})
    save_weights(folder, Transformer(cfg))
    tok.save(folder)
    return folder


def start_server(model: str, port: int, max_batch: int, threads: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "parrot", "serve", model, "--port", str(port), "--name",
           "bench", "--max-batch", str(max_batch), "--max-queue", "256", "--template", "chatml"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: {proc.stderr.read().decode()}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not become ready")


def one_request(url: str, i: int, max_tokens: int) -> dict:
    """Stream one chat answer; returns ttft_s, tokens, total_s (or error)."""
    body = {"model": "bench", "max_tokens": max_tokens, "temperature": 0.8, "seed": i,
            "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": f"Request {i}: tell me about parrots."}]}
    t0 = time.perf_counter()
    ttft, tokens = None, 0
    try:
        with requests.post(url + "/v1/chat/completions", json=body, stream=True,
                           timeout=600) as r:
            r.raise_for_status()
            for line in r.iter_lines():
                if not line.startswith(b"data: ") or line == b"data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
                elif ttft is None and chunk["choices"] and "role" not in chunk["choices"][0]["delta"]:
                    ttft = time.perf_counter() - t0
    except requests.RequestException as err:
        return {"error": str(err)}
    return {"ttft_s": ttft, "tokens": tokens, "total_s": time.perf_counter() - t0}


def run_phase(url: str, clients: int, per_client: int, max_tokens: int, first: int = 0
              ) -> tuple[list[dict], float]:
    """`clients` threads, each sending `per_client` requests in turn: (results, wall seconds)."""
    results: list[dict] = []
    lock = threading.Lock()

    def client(c: int) -> None:
        for k in range(per_client):
            out = one_request(url, first + c * per_client + k, max_tokens)
            with lock:
                results.append(out)

    t0 = time.perf_counter()
    workers = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return results, time.perf_counter() - t0


def summarize(results: list[dict], wall: float, clients: int) -> dict:
    ok = [r for r in results if "error" not in r and r["ttft_s"] is not None]
    ttfts = sorted(r["ttft_s"] for r in ok)
    tokens = sum(r["tokens"] for r in ok)
    return {"clients": clients, "requests": len(results), "failed": len(results) - len(ok),
            "generated_tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall,
            "ttft_p50_s": statistics.median(ttfts) if ttfts else None,
            "ttft_p95_s": ttfts[min(len(ttfts) - 1, int(0.95 * len(ttfts)))] if ttfts else None}


def interleaved(url: str, args: argparse.Namespace) -> tuple[dict, dict]:
    """The same requests both ways, in `--rounds` alternating slices, so that a shared
    machine's load drifts over both phases alike."""
    per_round = args.per_client // args.rounds
    seq: list[dict] = []
    con: list[dict] = []
    seq_wall = con_wall = 0.0
    for r in range(args.rounds):
        first = r * args.clients * per_round
        results, wall = run_phase(url, 1, args.clients * per_round, args.max_tokens, first)
        seq, seq_wall = seq + results, seq_wall + wall
        results, wall = run_phase(url, args.clients, per_round, args.max_tokens, first)
        con, con_wall = con + results, con_wall + wall
    return summarize(seq, seq_wall, 1), summarize(con, con_wall, args.clients)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: a random-weight model")
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--per-client", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=4, help="alternating slices per phase")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(make_model(Path(tmp), args.d_model, args.layers))
        server = start_server(model, args.port, args.clients, args.threads)
        url = f"http://127.0.0.1:{args.port}"
        try:
            one_request(url, -1, 4)  # warm-up
            sequential, concurrent = interleaved(url, args)
            health = requests.get(url + "/health", timeout=5).json()
        finally:
            server.terminate()
            server.wait(timeout=30)
    report(args, sequential, concurrent, health)


def report(args: argparse.Namespace, sequential: dict, concurrent: dict, health: dict) -> None:
    ratio = concurrent["tokens_per_s"] / sequential["tokens_per_s"]
    result = {"model": args.model or f"random llama d_model={args.d_model} layers={args.layers}",
              "max_tokens": args.max_tokens, "threads": args.threads,
              "sequential": sequential, "concurrent": concurrent,
              "throughput_ratio": ratio, "target_ratio": 4.0, "server_after": health}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"{'phase':<12}{'requests':>9}{'failed':>8}{'tokens':>8}{'wall s':>9}"
          f"{'tok/s':>9}{'TTFT p50':>10}{'TTFT p95':>10}")
    for name, row in (("sequential", sequential), ("concurrent", concurrent)):
        print(f"{name:<12}{row['requests']:>9}{row['failed']:>8}{row['generated_tokens']:>8}"
              f"{row['wall_s']:>9.2f}{row['tokens_per_s']:>9.1f}"
              f"{(row['ttft_p50_s'] or 0) * 1000:>8.0f}ms{(row['ttft_p95_s'] or 0) * 1000:>8.0f}ms")
    print(f"aggregate throughput concurrent / sequential: {ratio:.2f}x (target >= 4x); "
          f"server afterwards: {health}")


if __name__ == "__main__":
    main()
