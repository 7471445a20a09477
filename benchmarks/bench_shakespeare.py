"""tinyshakespeare at byte level: the classic small CPU recipe against our best recipe.

Both presets (and, with --ablation, single changes between them) train in the same run
through the same `parrot.training.runner.train` that `parrot train` uses, on the customary
split (first 90% of characters train, last 10% validation; vocabulary = 256 bytes).
Validation runs about every 40k training tokens (each recipe's eval_every) on one fixed
set of 20 x 12 windows; the time to first reach the target loss is reported both as
training time (evaluation excluded) and as wall time (evaluation included).

The peer is the recipe's best-known implementation, not installed here: its published
numbers on this machine (175 s, val 1.886) are recorded alongside.

Writes benchmarks/results/shakespeare.json and prints a table with ratios to the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from parrot.rundir import read_metrics  # noqa: E402
from parrot.training.runner import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "shakespeare.json"
DATA = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
TARGET = 1.886
REFERENCE = {"wall_s": 175.0, "val_loss": 1.886, "note": "classic recipe, reference code"}

# name -> (preset, overrides). Each ablation undoes one of shakespeare-best's changes:
# the architecture (RoPE, RMSNorm, SwiGLU), the learning rate, the batch size (batch 12 with
# the same number of tokens, so only throughput and update count differ).
RUNS = {
    "baseline": ("shakespeare-baseline", []),
    "best": ("shakespeare-best", []),
}
ABLATIONS = {
    "best/base-arch": ("shakespeare-best", ["model.positions=learned", "model.norm=layernorm",
                                            "model.mlp=gelu"]),
    "best/lr1e-3": ("shakespeare-best", ["train.lr=1e-3", "train.min_lr=1e-4"]),
    "best/batch12": ("shakespeare-best", ["train.batch_size=12", "train.steps=853",
                                          "train.warmup=107"]),
}


def summarize(rows: list[dict], result) -> dict:
    """Throughput, final loss and time-to-target from a run's metrics rows."""
    train_rows = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "val_loss" in r]
    hit = next((r for r in evals if r["val_loss"] <= TARGET), None)
    return {
        "steps": result.steps,
        "tokens": train_rows[-1]["tokens"],
        "tokens_per_s": train_rows[-1]["tokens"] / result.train_time_s,
        "final_val_loss": evals[-1]["val_loss"],
        "best_val_loss": min(r["val_loss"] for r in evals),
        "train_time_s": result.train_time_s,
        "wall_time_s": evals[-1]["wall_time_s"],
        "target_step": hit["step"] if hit else None,
        "target_train_time_s": hit["train_time_s"] if hit else None,
        "target_wall_time_s": hit["wall_time_s"] if hit else None,
        "val_curve": [[r["step"], round(r["val_loss"], 4), round(r["train_time_s"], 2)]
                      for r in evals],
    }


def run_one(preset: str, overrides: list[str], args: argparse.Namespace, tmp: Path) -> dict:
    out = tmp / f"run{len(list(tmp.iterdir()))}"
    common = ["train.eval_iters=20",
              "train.eval_batch_size=12", "train.checkpoint_every=100000",
              f"train.threads={args.threads}", "train.log_every=50"]
    if args.steps:
        common.append(f"train.steps={args.steps}")
    if args.eval_every:
        common.append(f"train.eval_every={args.eval_every}")
    result = train(preset, out, data=[args.data], overrides=[*overrides, *common],
                   show_progress=False)
    return summarize(read_metrics(out), result)


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a / b


def table(runs: dict[str, dict]) -> str:
    base = runs["baseline"]
    head = (f"{'run':<15}{'tok/s':>9}{'final val':>10}{'train s':>9}{'wall s':>8}"
            f"{'to 1.886 (train s)':>20}{'x baseline':>11}")
    lines = [head, "-" * len(head)]
    for name, r in runs.items():
        t = r["target_train_time_s"]
        x = ratio(t, base["target_train_time_s"] or base["train_time_s"])
        reached = f"{t:.1f} @{r['target_step']}" if t else "not reached"
        lines.append(f"{name:<15}{r['tokens_per_s']:>9.0f}{r['final_val_loss']:>10.4f}"
                     f"{r['train_time_s']:>9.1f}{r['wall_time_s']:>8.1f}"
                     f"{reached:>20}{(f'{x:.2f}' if x else '-'):>11}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-every", type=int, default=None,
                        help="validation interval in steps (default: each recipe's, ~40k tokens)")
    parser.add_argument("--steps", type=int, default=None, help="shorter runs (development)")
    parser.add_argument("--ablation", action="store_true", help="also run single changes")
    parser.add_argument("--only", nargs="+", default=None, help="run just these names")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    plan = {**RUNS, **(ABLATIONS if args.ablation else {})}
    if args.only:
        plan = {k: v for k, v in plan.items() if k in args.only}
    runs, load_before = {}, os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for name, (preset, overrides) in plan.items():
            start = time.perf_counter()
            runs[name] = {"preset": preset, "overrides": overrides,
                          **run_one(preset, overrides, args, Path(tmp))}
            print(f"{name}: {time.perf_counter() - start:.1f} s, "
                  f"val {runs[name]['final_val_loss']:.4f}", flush=True)
    report = {
        "benchmark": "tinyshakespeare byte-level, 90/10 split", "target_val_loss": TARGET,
        "reference": REFERENCE, "threads": args.threads, "steps_override": args.steps,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        "torch": torch.__version__, "load_average_before": load_before,
        "load_average_after": os.getloadavg(), "runs": runs,
    }
    if "baseline" in runs and "best" in runs:
        report["best_vs_baseline_time_to_target"] = ratio(
            runs["best"]["target_train_time_s"],
            runs["baseline"]["target_train_time_s"] or runs["baseline"]["train_time_s"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    if "baseline" in runs:
        print(table(runs))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
