"""Is the SDPA fast path actually fast? Training steps of the baseline model, both paths.

Runs parrot's fused path (`scaled_dot_product_attention`) and its explicit path (the
softmax weights materialized, as `AttentionCapture` needs) in the same run, interleaved,
for the classic small recipe (B=12, d=128, 4 layers, 4 heads) at T=64 and T=256.
A step is forward + cross-entropy + backward + AdamW. Writes
benchmarks/results/model_attention.json and prints medians and ratios.

    .venv/bin/python benchmarks/bench_model_attention.py [--steps 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from parrot.model import AttentionCapture, Transformer, get_preset

RESULTS = Path(__file__).resolve().parent / "results" / "model_attention.json"
BATCH = 12


def make_step(model: Transformer, tokens: torch.Tensor, explicit: bool):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> float:
        start = time.perf_counter()
        logits = model(tokens[:, :-1], capture=AttentionCapture() if explicit else None)
        loss = F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    return step


def measure(context: int, steps: int) -> dict:
    torch.manual_seed(0)
    model = Transformer(get_preset("gpt-tiny", context_length=context))
    tokens = torch.randint(0, 256, (BATCH, context + 1))
    paths = {"sdpa": make_step(model, tokens, False), "explicit": make_step(model, tokens, True)}
    times: dict[str, list[float]] = {name: [] for name in paths}
    for step in paths.values():  # warm-up
        for _ in range(3):
            step()
    for _ in range(steps):  # interleaved, so machine noise hits both paths alike
        for name, step in paths.items():
            times[name].append(step())
    row = {"context": context, "batch": BATCH}
    for name, values in times.items():
        median = statistics.median(values)
        row[f"{name}_step_ms"] = round(1000 * median, 2)
        row[f"{name}_tokens_per_s"] = round(BATCH * context / median)
    row["speedup"] = round(row["explicit_step_ms"] / row["sdpa_step_ms"], 3)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    rows = [measure(context, args.steps) for context in (64, 256)]
    load = {"before": load_before, "after": os.getloadavg()[0]}  # shared machine: context
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"threads": args.threads, "steps": args.steps,
                                   "torch": torch.__version__, "load_average_1min": load,
                                   "rows": rows}, indent=2))
    print(f"{'T':>5} {'sdpa ms':>9} {'explicit ms':>12} {'sdpa tok/s':>11} "
          f"{'explicit tok/s':>15} {'speedup':>8}")
    for r in rows:
        print(f"{r['context']:>5} {r['sdpa_step_ms']:>9} {r['explicit_step_ms']:>12} "
              f"{r['sdpa_tokens_per_s']:>11} {r['explicit_tokens_per_s']:>15} "
              f"{r['speedup']:>7}x")
    print(f"load average {load['before']:.1f} -> {load['after']:.1f}; wrote {RESULTS}")


if __name__ == "__main__":
    main()
