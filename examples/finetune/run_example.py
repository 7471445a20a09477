"""Teach SmolLM2-135M-Instruct a persona with LoRA on CPU, and show before/after.

    PARROT_HOME=... python examples/finetune/run_example.py [--steps 40] [--method lora]

Needs the pulled model (`parrot pull smollm2-135m-instruct`). Writes the run directory to
examples/finetune/out/<method>/ and a side-by-side table to results_<method>.md/.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

import parrot
from parrot.training.finetune import sft_loss

HERE = Path(__file__).parent
MODEL = "smollm2-135m-instruct"


def answers(llm: parrot.LLM, questions: list[str], system: str) -> list[str]:
    """Greedy replies, rendered with the model's own chat template (it knows its stop token)."""
    return [llm.chat([{"role": "system", "content": system}, {"role": "user", "content": q}],
                     temperature=0.0, max_new_tokens=40).text.strip() for q in questions]


def held_out(path: Path) -> tuple[list[str], str]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [r["messages"][1]["content"] for r in rows], rows[0]["messages"][0]["content"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--method", default="lora", choices=("lora", "full", "soft-prompt"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    questions, system = held_out(HERE / "heldout.jsonl")
    base = parrot.load(MODEL, quantize="none", max_batch=1, max_len=256)
    template = base.info.chat_template
    before_loss = sft_loss(base.model, base.tokenizer, template, HERE / "heldout.jsonl")
    before = answers(base, questions[:4], system)
    del base
    out = HERE / "out" / args.method
    shutil.rmtree(out, ignore_errors=True)
    lr, min_lr = (2e-3, 2e-4) if args.method != "full" else (5e-5, 5e-6)
    t0 = time.perf_counter()
    result = parrot.finetune(
        MODEL, HERE / "train.jsonl", out, method=args.method, rank=8, alpha=16,
        targets="q,k,v,o", prompt_tokens=16, val_fraction=0.0, steps=args.steps, batch_size=4,
        lr=lr, min_lr=min_lr, warmup=4, eval_every=args.steps, checkpoint_every=args.steps,
        log_every=5, threads=args.threads, show_progress=False)
    seconds = time.perf_counter() - t0
    tuned = parrot.load(out, quantize="none", max_batch=1, max_len=256)
    after_loss = sft_loss(tuned.model, tuned.tokenizer, template, HERE / "heldout.jsonl")
    after = answers(tuned, questions[:4], system)
    report = {"model": MODEL, "method": args.method, "steps": args.steps,
              "trainable_parameters": result.metrics["trainable_parameters"],
              "total_parameters": result.metrics["total_parameters"], "finetune_seconds": seconds,
              "heldout_loss_before": before_loss, "heldout_loss_after": after_loss,
              "examples": [{"question": q, "before": b, "after": a}
                           for q, b, a in zip(questions, before, after, strict=False)]}
    (HERE / f"results_{args.method}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# {MODEL}, {args.method}, {args.steps} steps ({seconds:.0f} s on CPU)", "",
             f"Held-out assistant-token loss: {before_loss:.3f} before, {after_loss:.3f} after.",
             f"Trainable parameters: {result.metrics['trainable_parameters']:,} of "
             f"{result.metrics['total_parameters']:,}.", "", "| question | before | after |",
             "|---|---|---|"]
    for ex in report["examples"]:
        cells = [ex[k].replace("\n", " ").replace("|", "/") for k in ("question", "before",
                                                                     "after")]
        lines.append("| " + " | ".join(cells) + " |")
    (HERE / f"results_{args.method}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
