"""Engine benchmark: decode tokens/s and time to first token, KV cache vs recomputing.

For prompt lengths 64, 256 and 1024 and batch sizes 1 and 8, on a small Llama-style
model with random weights (or a trained run directory with --run), three ways to
generate the same number of greedy tokens run in the same process, interleaved:

  engine     parrot's Engine: one prefill per prompt, then batched cached decode steps
  recompute  the same model without a cache: every step re-reads the whole sequence
  hf         transformers' generate (use_cache=True) on a Llama of the same shape

Writes benchmarks/results/engine.json and prints a table with ratios of medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from parrot.infer import Engine, SamplingParams  # noqa: E402
from parrot.model import Transformer, get_preset  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "engine.json"


class _Bytes:
    """A byte-level tokenizer stand-in: the benchmark feeds ids and never reads text."""

    eos_id = None

    def token_bytes(self, token_id: int) -> bytes:
        return bytes([token_id % 256])


def parrot_model(run: str | None, context: int) -> tuple[Transformer, object]:
    if run:
        from parrot.rundir import load_model

        model, tokenizer, _ = load_model(run)
        return model, tokenizer
    torch.manual_seed(0)
    cfg = get_preset("llama-tiny", context_length=context)
    return Transformer(cfg).eval(), _Bytes()


def hf_model(cfg) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    hf_cfg = LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.ff_size,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.kv_heads, max_position_embeddings=cfg.context_length,
        rope_theta=cfg.rope_theta, tie_word_embeddings=True, rms_norm_eps=cfg.norm_eps,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(hf_cfg).eval()


def run_engine(model, tokenizer, prompts: torch.Tensor, new: int) -> tuple[float, float]:
    """(time to first token, decode tokens/s) over the batch, from the per-request stats."""
    engine = Engine(model, tokenizer, max_batch=prompts.shape[0])
    params = SamplingParams(temperature=0, max_new_tokens=new, ignore_eos=True)
    start = time.perf_counter()
    done = engine.generate_batch(prompts.tolist(), params)
    end = time.perf_counter()
    first = max(c.stats.time_to_first_token_s for c in done)  # the whole batch has begun
    return first, sum(len(c.token_ids) - 1 for c in done) / (end - start - first)


@torch.inference_mode()
def run_recompute(model, prompts: torch.Tensor, new: int) -> tuple[float, float]:
    """Greedy decoding with a full forward over the whole sequence for every token."""
    seq = prompts
    start = time.perf_counter()
    first = 0.0
    for i in range(new):
        nxt = model(seq)[:, -1].argmax(-1, keepdim=True)
        seq = torch.cat([seq, nxt], dim=1)
        if i == 0:
            first = time.perf_counter() - start
    rest = time.perf_counter() - start - first
    return first, prompts.shape[0] * (new - 1) / rest


@torch.inference_mode()
def run_hf(model, prompts: torch.Tensor, new: int) -> tuple[float, float]:
    kwargs = dict(do_sample=False, use_cache=True, pad_token_id=0,
                  attention_mask=torch.ones_like(prompts))
    start = time.perf_counter()
    model.generate(prompts, max_new_tokens=1, min_new_tokens=1, **kwargs)
    first = time.perf_counter() - start
    start = time.perf_counter()
    model.generate(prompts, max_new_tokens=new, min_new_tokens=new, **kwargs)
    total = time.perf_counter() - start
    return first, prompts.shape[0] * (new - 1) / max(total - first, 1e-9)


def measure(args: argparse.Namespace) -> list[dict]:
    context = max(args.lengths) + 64  # fixed, so every run uses the same model
    model, tokenizer = parrot_model(args.run, context)
    peers = {"engine": lambda p: run_engine(model, tokenizer, p, args.new_tokens),
             "recompute": lambda p: run_recompute(model, p, args.new_tokens)}
    if not args.run and not args.no_hf:
        hf = hf_model(model.config)
        peers["hf"] = lambda p: run_hf(hf, p, args.new_tokens)
    rows = []
    gen = torch.Generator().manual_seed(0)
    for fn in peers.values():  # warm-up: first calls pay one-time set-up costs
        fn(torch.randint(0, model.config.vocab_size, (2, 16), generator=gen))
    for length in args.lengths:
        for batch in args.batches:
            prompts = torch.randint(0, model.config.vocab_size, (batch, length), generator=gen)
            samples = {name: [] for name in peers}
            for _ in range(args.repeats):  # interleaved, so drift hits every method alike
                for name, fn in peers.items():
                    samples[name].append(fn(prompts))
            for name, values in samples.items():
                rows.append({
                    "method": name, "prompt_len": length, "batch": batch,
                    "new_tokens": args.new_tokens,
                    "ttft_s": statistics.median(v[0] for v in values),
                    "decode_tok_s": statistics.median(v[1] for v in values),
                })
            print(f"  done prompt {length} batch {batch}", file=sys.stderr)
            save(args, rows)  # after every group, so a cut-short run keeps what it measured
    return rows


def save(args: argparse.Namespace, rows: list[dict]) -> None:
    meta = {"torch": torch.__version__, "threads": args.threads, "new_tokens": args.new_tokens,
            "repeats": args.repeats,
            "model": args.run or "llama-tiny preset, context 1088, random weights"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


def table(rows: list[dict]) -> str:
    by = {(r["method"], r["prompt_len"], r["batch"]): r for r in rows}
    keys = sorted({(r["prompt_len"], r["batch"]) for r in rows})
    has_hf = any(r["method"] == "hf" for r in rows)
    head = (f"{'prompt':>6} {'batch':>5} | {'engine tok/s':>12} {'recompute':>10} {'ratio':>6}"
            f" | {'TTFT ms':>8} {'recompute':>10}" + (f" | {'hf tok/s':>9} {'ratio':>6}"
                                                      if has_hf else ""))
    lines = [head, "-" * len(head)]
    for length, batch in keys:
        e, r = by[("engine", length, batch)], by[("recompute", length, batch)]
        line = (f"{length:>6} {batch:>5} | {e['decode_tok_s']:>12.1f} {r['decode_tok_s']:>10.1f}"
                f" {e['decode_tok_s'] / r['decode_tok_s']:>5.1f}x | {e['ttft_s'] * 1e3:>8.1f}"
                f" {r['ttft_s'] * 1e3:>10.1f}")
        if has_hf:
            h = by[("hf", length, batch)]
            line += f" | {h['decode_tok_s']:>9.1f} {e['decode_tok_s'] / h['decode_tok_s']:>5.2f}x"
        lines.append(line)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a trained run directory (default: llama-tiny, random)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-hf", action="store_true", help="skip the transformers peer")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = measure(args)
    print(table(rows))
    print(f"ratio = engine / peer (decode tokens/s, medians of {args.repeats}); "
          f"written to {args.out}")


if __name__ == "__main__":
    main()
