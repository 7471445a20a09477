"""The RNN history lesson as a benchmark: three models of ~0.5M parameters on the seeded toy
translation task, accuracy against source length, and an additive-attention alignment.

Runs `parrot.lessons.rnn_lesson` (what `parrot lesson rnn` runs) in --work (resumable:
trained models there are kept, so `parrot lesson rnn --only NAME` in three processes can
train them first), then copies lesson.json and the two pictures to benchmarks/results/
as rnn_lesson.json, rnn_accuracy_by_length.png and rnn_alignment.png.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_rnn_lesson.py --work /tmp/rnn \
        --steps 400 --batch-size 64 --pairs 8000
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from parrot.lessons import rnn_lesson

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--pairs", type=int, default=8000)
    parser.add_argument("--test-pairs", type=int, default=800)
    args = parser.parse_args()
    record = rnn_lesson(args.work, steps=args.steps, pairs=args.pairs,
                        test_pairs=args.test_pairs, batch_size=args.batch_size,
                        show_progress=False)
    work = Path(args.work)
    for name, metrics in record["models"].items():
        rows = [json.loads(r) for r in (work / name / "metrics.jsonl").read_text().splitlines()]
        last = [r for r in rows if "train_time_s" in r][-1]
        metrics["train_time_s"] = last["train_time_s"]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "rnn_lesson.json").write_text(json.dumps(record, indent=1) + "\n")
    shutil.copy(work / "accuracy_by_length.png", RESULTS / "rnn_accuracy_by_length.png")
    shutil.copy(work / "alignment.png", RESULTS / "rnn_alignment.png")
    print(f"{'model':>14} {'params':>8} {'exact':>6} {'token acc':>9} {'train s':>8}")
    for name, m in record["models"].items():
        print(f"{name:>14} {m['parameters']:>8} {m['exact_match']:>6.3f} "
              f"{m['token_accuracy']:>9.3f} {m['train_time_s']:>8.0f}")
        print("   by length: " + "  ".join(f"{r['lo']}-{r['hi']}: {r['exact_match']:.2f}/"
                                         f"{r['token_accuracy']:.2f}" for r in m["by_length"]))


if __name__ == "__main__":
    main()
