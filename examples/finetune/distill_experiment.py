"""Distilled vs hard-label student, same steps, same data, same initial weights.

    PARROT_HOME=... python examples/finetune/distill_experiment.py [--steps 150]

Teacher: SmolLM2-135M-Instruct. Student: the `llama-tiny` preset (width 128, 4 layers)
with SmolLM2's vocabulary, fresh weights. Data: the first --chars characters of parrot's
embedded corpus (pydoc topics and stdlib docstrings), last 10% of documents held out.
Both runs report the plain next-token (hard-label) loss on the same held-out windows.
Writes results_distill.json next to this file.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from parrot.data.corpus import embedded_corpus
from parrot.training.distill import DistillConfig, distill

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--chars", type=int, default=400_000)
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="parrot-distill-"))
    docs, size = [], 0
    for doc in embedded_corpus():
        docs.append(doc)
        size += len(doc)
        if size >= args.chars:
            break
    data = work / "corpus.jsonl"
    data.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    train = [f"train.{knob}" for knob in (
        f"steps={args.steps}", f"batch_size={args.batch_size}",
        f"warmup={max(1, args.steps // 10)}", f"eval_every={max(1, args.steps // 5)}",
        "eval_iters=8", f"checkpoint_every={args.steps}", "log_every=10",
        f"threads={args.threads}", "seq_len=64")]
    results = {}
    for name, alpha in (("distilled", args.alpha), ("hard_labels", 0.0)):
        cfg = DistillConfig(temperature=args.temperature, alpha=alpha)
        t0 = time.perf_counter()
        result = distill("smollm2-135m-instruct", "llama-tiny", work / name, data=[data],
                         cfg=cfg, overrides=train, show_progress=False)
        results[name] = {"alpha": alpha, "temperature": args.temperature,
                         "val_loss": result.final_val_loss, "steps": result.steps,
                         "seconds": time.perf_counter() - t0}
        print(name, results[name], flush=True)
    report = {"teacher": "smollm2-135m-instruct", "student": "llama-tiny", "docs": len(docs),
              "chars": size, "batch_size": args.batch_size, "seq_len": 64, **results}
    (HERE / "results_distill.json").write_text(json.dumps(report, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
