"""LoRA vs full fine-tuning of SmolLM2-135M on CPU: tokens/s and peak memory, same batch.

Each variant runs in its own child process (so peak RSS is its own), in interleaved rounds,
on the same model, the same batch and the same SFT-free next-token objective:

  full        every weight trains (AdamW moments and gradients for 135M parameters)
  lora-qkvo   LoRA rank 8 on q,k,v,o (base frozen; only A and B get gradients and moments)
  lora-all    LoRA rank 8 on every projection (q,k,v,o,gate,up,down)

Measured: median step time → tokens/s, the child's peak RSS (ru_maxrss) and the RSS added
by training beyond the loaded model. Writes benchmarks/results/finetune.json and prints a
table with ratios against full fine-tuning.

    PARROT_HOME=... .venv/bin/python benchmarks/bench_finetune.py [--steps 4] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

RESULTS = Path(__file__).resolve().parent / "results" / "finetune.json"
VARIANTS = {"full": None, "lora-qkvo": "q,k,v,o", "lora-all": "all"}


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(variant: str, model_spec: str, batch: int, seq_len: int, steps: int) -> dict:
    import torch

    from parrot.adapt.lora import apply_lora, trainable_parameters
    from parrot.train.finetune import resolve_base
    from parrot.train.objectives import next_token
    from parrot.train.optim import build_adamw

    model, tokenizer, _ = resolve_base(model_spec)
    loaded = rss_mb()
    targets = VARIANTS[variant]
    if targets:
        apply_lora(model, targets, rank=8, alpha=16)
    model.train()
    optimizer = build_adamw(model, 1e-4, 0.0, (0.9, 0.99))
    text = "The parrot repeats what it hears, and learns a little more each day. " * 200
    ids = torch.tensor(tokenizer.encode(text)[: batch * (seq_len + 1)]).view(batch, seq_len + 1)
    times = []
    for step in range(steps + 1):  # the first step warms up allocators and kernels
        t0 = time.perf_counter()
        loss, _ = next_token(model, ids)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step:
            times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"variant": variant, "trainable": trainable_parameters(model),
            "step_s": statistics.median(times), "tokens_per_s": batch * seq_len
            / statistics.median(times), "peak_rss_mb": peak, "loaded_rss_mb": loaded,
            "training_extra_mb": peak - loaded, "loss": float(loss)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", default=None)
    args = parser.parse_args()
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(child(args.child, args.model, args.batch, args.seq_len, args.steps)))
        return
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for _ in range(args.rounds):
        for variant in VARIANTS:
            cmd = [sys.executable, __file__, "--child", variant, "--model", args.model,
                   "--batch", str(args.batch), "--seq-len", str(args.seq_len),
                   "--steps", str(args.steps), "--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            runs[variant].append(json.loads(out.strip().splitlines()[-1]))
    summary = {v: {k: statistics.median(r[k] for r in rs) for k in
                   ("tokens_per_s", "peak_rss_mb", "training_extra_mb", "trainable")}
               for v, rs in runs.items()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"settings": vars(args), "runs": runs, "summary": summary},
                                  indent=2) + "\n")
    full = summary["full"]
    print(f"{'variant':<10} {'trainable':>12} {'tok/s':>8} {'x full':>7} {'peak MB':>8} "
          f"{'x full':>7} {'train MB':>9}")
    for v, s in summary.items():
        print(f"{v:<10} {int(s['trainable']):>12,} {s['tokens_per_s']:>8.1f} "
              f"{s['tokens_per_s'] / full['tokens_per_s']:>7.2f} {s['peak_rss_mb']:>8.0f} "
              f"{s['peak_rss_mb'] / full['peak_rss_mb']:>7.2f} {s['training_extra_mb']:>9.0f}")


if __name__ == "__main__":
    main()
