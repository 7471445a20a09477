"""Peak memory of attention at T = 1k, 4k, 16k: explicit (T x T scores), tiled, and SDPA.

Each (path, T) runs in its own child process, so one measurement's allocations cannot
hide another's. The child builds q, k, v (B=1, H=2 query heads sharing Hkv=1 kv head,
D=64, float32, causal), resets the kernel's peak-RSS counter (/proc/self/clear_refs),
runs one forward, and reports VmHWM - VmRSS-before: the extra resident memory the
attention call needed. Also reports seconds per call. Writes
benchmarks/results/tiled_attention.json and tiled_attention.png.

    .venv/bin/python benchmarks/bench_tiled_attention.py [--lengths 1024 4096 16384]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
PATHS = ("explicit", "tiled", "sdpa")
HEADS, KV_HEADS, HEAD_DIM = 2, 1, 64


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(path: str, length: int) -> dict:
    """One measurement in this process (see the module docstring)."""
    import torch
    import torch.nn.functional as F

    from parrot.model.attention import attention, causal_mask, repeat_kv
    from parrot.model.tiled_attention import tiled_attention

    torch.manual_seed(0)
    q = torch.randn(1, HEADS, length, HEAD_DIM)
    k, v = torch.randn(1, KV_HEADS, length, HEAD_DIM), torch.randn(1, KV_HEADS, length, HEAD_DIM)

    def run() -> torch.Tensor:
        if path == "explicit":
            index = torch.arange(length)
            mask = causal_mask(index[None], index)
            return attention(q, repeat_kv(k, HEADS), repeat_kv(v, HEADS), mask)[0]
        if path == "tiled":
            return tiled_attention(q, k, v, causal=True, block_q=256, block_k=256)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

    with torch.no_grad():
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        before = _status_kb("VmRSS")
        start = time.perf_counter()
        out = run()
        seconds = time.perf_counter() - start
        peak = _status_kb("VmHWM")
    return {"path": path, "length": length, "extra_peak_mb": (peak - before) / 1024,
            "seconds": seconds, "output_mb": out.numel() * 4 / 2**20}


def measure(path: str, length: int) -> dict:
    cmd = [sys.executable, __file__, "--child", path, str(length)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for path in PATHS:
        mine = sorted((r["length"], r["extra_peak_mb"]) for r in rows if r["path"] == path)
        ax.plot([m[0] for m in mine], [max(m[1], 0.1) for m in mine], "o-", label=path)
    lengths = sorted({r["length"] for r in rows})
    ax.plot(lengths, [HEADS * t * t * 4 / 2**20 for t in lengths], "k:",
            label="H x T x T float32 scores")
    ax.set(xscale="log", yscale="log", xlabel="sequence length T",
           ylabel="extra peak memory (MiB)",
           title=f"Causal attention, H={HEADS}, Hkv={KV_HEADS}, D={HEAD_DIM}, float32")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--child", nargs=2, metavar=("PATH", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return
    rows = [measure(path, length) for length in args.lengths for path in PATHS]
    print(f"{'T':>6} {'path':>9} {'extra peak MiB':>15} {'seconds':>9} {'vs tiled':>9}")
    for row in rows:
        tiled = next(r for r in rows if r["path"] == "tiled" and r["length"] == row["length"])
        ratio = row["extra_peak_mb"] / max(tiled["extra_peak_mb"], 1e-9)
        print(f"{row['length']:>6} {row['path']:>9} {row['extra_peak_mb']:>15.1f} "
              f"{row['seconds']:>9.3f} {ratio:>8.1f}x")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tiled_attention.json").write_text(json.dumps(
        {"heads": HEADS, "kv_heads": KV_HEADS, "head_dim": HEAD_DIM, "dtype": "float32",
         "rows": rows}, indent=2) + "\n")
    plot(rows, RESULTS / "tiled_attention.png")


if __name__ == "__main__":
    main()
