"""LoRA vs full fine-tuning of SmolLM2-135M on CPU: tokens/s and peak memory, same batch.

Each variant runs in its own child process (so peak RSS is its own), in interleaved rounds,
on the same model, the same batch and the same SFT-free next-token objective:

  full        every weight trains (AdamW moments and gradients for 135M parameters)
  lora-qkvo   LoRA rank 8 on q,k,v,o (base frozen; only A and B get gradients and moments)
  lora-all    LoRA rank 8 on every projection (q,k,v,o,gate,up,down)
  qlora-qkvo  lora-qkvo over a base whose Linear weights are int8 (parrot.adapt.qlora)

Measured: median step time → tokens/s, the child's peak RSS (ru_maxrss, which includes
loading the fp32 model), the peak RSS of the training phase alone (VmHWM reset through
/proc/self/clear_refs after setup and malloc_trim), and the bytes of the model's tensors.
Writes benchmarks/results/finetune.json and prints a table with ratios against full.

`--part cache` instead times distillation from SmolLM2 into a small student twice over
one teacher cache (`parrot distill --teacher-cache`): the first run fills it (teacher
forward every step), the second reads it (no teacher); writes results/distill_cache.json.
`--part soft-prompt` times engine decoding of the base against the base with a 16-vector
soft prompt (results/soft_prompt_engine.json).

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
VARIANTS = {"full": None, "lora-qkvo": "q,k,v,o", "lora-all": "all", "qlora-qkvo": "q,k,v,o"}


def hwm_reset() -> None:
    """Return freed heap pages to the OS, then restart the kernel's peak-RSS counter."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(variant: str, model_spec: str, batch: int, seq_len: int, steps: int) -> dict:
    import torch

    from parrot.adapt.lora import apply_lora, trainable_parameters
    from parrot.adapt.qlora import quantize_linears, weight_bytes
    from parrot.hub.resolve import resolve_model
    from parrot.training.objectives import next_token
    from parrot.training.optim import build_adamw

    model, tokenizer, _ = resolve_model(model_spec)
    loaded = rss_mb()
    targets = VARIANTS[variant]
    if variant.startswith("qlora"):
        quantize_linears(model)
    if targets:
        apply_lora(model, targets, rank=8, alpha=16)
    model.train()
    model_mb = weight_bytes(model) / 2**20
    hwm_reset()
    setup = rss_mb()
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
            "model_mb": model_mb, "setup_rss_mb": setup, "train_peak_rss_mb": hwm_mb(),
            "step_s": statistics.median(times), "tokens_per_s": batch * seq_len
            / statistics.median(times), "peak_rss_mb": peak, "loaded_rss_mb": loaded,
            "training_extra_mb": peak - loaded, "loss": float(loss)}


def top_k_mass(model_spec: str, seq_len: int, k: int) -> dict[str, float]:
    """Mean probability the teacher's top k ids hold, at T = 1 and T = 2 (embedded corpus)."""
    import torch

    from parrot.data.corpus import embedded_corpus
    from parrot.hub.resolve import resolve_model

    model, tokenizer, _ = resolve_model(model_spec)
    ids = tokenizer.encode("\n".join(embedded_corpus()[:4]))[: 4 * seq_len]
    with torch.no_grad():
        logits = model(torch.tensor(ids).view(4, seq_len))
    return {f"T={t}": float(torch.softmax(logits / t, -1).topk(k, -1).values.sum(-1).mean())
            for t in (1.0, 2.0)}


def soft_prompt_bench(args: argparse.Namespace) -> None:
    """Engine decode speed: the base vs the base with a 16-vector soft prompt (KV cached)."""
    import torch

    from parrot.adapt.soft_prompt import SoftPromptModel
    from parrot.hub.resolve import resolve_model
    from parrot.infer import Engine, SamplingParams

    torch.set_num_threads(args.threads)
    base, tokenizer, _ = resolve_model(args.model)
    models = {"base": base, "soft-prompt-16": SoftPromptModel(base, 16).eval()}
    prompt = tokenizer.encode("The parrot repeats what it hears, and")
    params = SamplingParams(temperature=0.0, max_new_tokens=args.steps * 16)
    rows: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.rounds):  # interleaved
        for name, model in models.items():
            engine = Engine(model, tokenizer, max_batch=1, max_len=256, eos_ids=[])
            engine.generate(prompt, SamplingParams(temperature=0.0, max_new_tokens=2))
            t0 = time.perf_counter()
            done = engine.generate(prompt, params)
            rows[name].append(len(done.token_ids) / (time.perf_counter() - t0))
    summary = {name: statistics.median(v) for name, v in rows.items()}
    path = RESULTS.with_name("soft_prompt_engine.json")
    path.write_text(json.dumps({"settings": vars(args), "tokens_per_s": rows,
                                "median": summary}, indent=2) + "\n")
    for name, speed in summary.items():
        print(f"{name:<16} {speed:>7.1f} tokens/s  x base {speed / summary['base']:.2f}")


def cache_bench(args: argparse.Namespace) -> None:
    """Distill twice over one teacher cache: fill (teacher runs) vs reuse (it does not)."""
    import tempfile

    import torch

    from parrot.training.distill import DistillConfig, distill

    torch.set_num_threads(args.threads)
    train = [f"train.{knob}" for knob in (
        f"steps={args.steps}", f"batch_size={args.batch}", "warmup=1",
        f"eval_every={args.steps}", "eval_iters=2", "log_every=1",
        f"checkpoint_every={args.steps}", f"threads={args.threads}", f"seq_len={args.seq_len}")]
    cfg = DistillConfig(temperature=2.0, alpha=0.5, top_k=64)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("fill", "reuse"):
            t0 = time.perf_counter()
            result = distill(args.model, "llama-tiny", Path(tmp) / name, cfg=cfg, overrides=train,
                             show_progress=False, teacher_cache=Path(tmp) / "cache")
            metrics = [json.loads(r) for r in (Path(tmp) / name / "metrics.jsonl")
                       .read_text().splitlines()]
            rows[name] = {"seconds": time.perf_counter() - t0,
                          "train_time_s": max(m.get("train_time_s", 0) for m in metrics),
                          "losses": [m["loss"] for m in metrics if "loss" in m],
                          "val_loss": result.final_val_loss}
        size = sum(f.stat().st_size for f in (Path(tmp) / "cache").rglob("*.pt"))
    speedup = rows["fill"]["train_time_s"] / rows["reuse"]["train_time_s"]
    out = {"settings": vars(args), "runs": rows, "cache_mb": size / 2**20,
           "top_k_mass": top_k_mass(args.model, args.seq_len, 64),
           "train_time_speedup": speedup,
           "same_losses": rows["fill"]["losses"] == rows["reuse"]["losses"]}
    path = RESULTS.with_name("distill_cache.json")
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"{'run':<6} {'train s':>8} {'total s':>8} {'val loss':>9}")
    for name, r in rows.items():
        print(f"{name:<6} {r['train_time_s']:>8.1f} {r['seconds']:>8.1f} {r['val_loss']:>9.4f}")
    print(f"training speedup with the cache: {speedup:.2f}x; cache {size / 2**20:.1f} MB; "
          f"identical losses: {out['same_losses']}; top-64 mass {out['top_k_mass']}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", default=None)
    parser.add_argument("--part", choices=("memory", "cache", "soft-prompt"), default="memory")
    args = parser.parse_args()
    if args.part == "cache":
        return cache_bench(args)
    if args.part == "soft-prompt":
        return soft_prompt_bench(args)
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
                   ("tokens_per_s", "peak_rss_mb", "training_extra_mb", "trainable",
                    "model_mb", "train_peak_rss_mb")}
               for v, rs in runs.items()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"settings": vars(args), "runs": runs, "summary": summary},
                                  indent=2) + "\n")
    full = summary["full"]
    print(f"{'variant':<10} {'trainable':>12} {'tok/s':>8} {'x full':>7} {'peak MB':>8} "
          f"{'x full':>7} {'model MB':>9} {'train-phase peak MB':>20}")
    for v, s in summary.items():
        print(f"{v:<10} {int(s['trainable']):>12,} {s['tokens_per_s']:>8.1f} "
              f"{s['tokens_per_s'] / full['tokens_per_s']:>7.2f} {s['peak_rss_mb']:>8.0f} "
              f"{s['peak_rss_mb'] / full['peak_rss_mb']:>7.2f} {s['model_mb']:>9.0f} "
              f"{s['train_peak_rss_mb']:>20.0f}")


if __name__ == "__main__":
    main()
