"""Mixture-of-experts load balancing: no balancing vs the auxiliary loss vs loss-free bias.

One small MoE (the `moe-tiny` recipe: 4 layers, d_model 128, 8 SwiGLU experts of width
128, top-2) trains on the embedded corpus five times through `parrot.training.runner.train`
(the code `parrot train` runs), with the same seed, data, tokenizer and steps; only
`model.moe_balance` differs:

    none       the router is trained by the language-modelling loss alone (the peer:
               what the balancing methods are measured against),
    aux_loss   + alpha * N * sum_i f_i P_i per layer (alpha = 0.01),
    loss_free  selection on p + b, b_i += u * sign(mean load - load_i) after each step
               (u = 0.001, DeepSeek's value, and the larger 0.003 and 0.01 for a run this short).

The five runs go side by side, one process and one thread each. Reported per method:
per-layer load entropy (max ln 8 = 2.079) and min/max expert share over the last quarter
of training, validation loss (plain cross-entropy), training time.
Writes benchmarks/results/moe_balance.json, benchmarks/results/moe_balance.png (expert
shares over steps, one row per method) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from parrot.rundir import read_metrics  # noqa: E402
from parrot.training.runner import train  # noqa: E402
from parrot.viz.experts import draw_expert_loads, load_history  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# name -> model overrides; the loss-free rate u is run at DeepSeek's 0.001, 0.003 and 0.01.
METHODS = {
    "none": ["model.moe_balance=none"],
    "aux_loss": ["model.moe_balance=aux_loss", "model.moe_aux_coef=0.01"],
    "loss_free": ["model.moe_balance=loss_free", "model.moe_bias_rate=0.001"],
    "loss_free_u0.003": ["model.moe_balance=loss_free", "model.moe_bias_rate=0.003"],
    "loss_free_u0.01": ["model.moe_balance=loss_free", "model.moe_bias_rate=0.01"],
}


def late_loads(rows: list[dict], fraction: float = 0.25) -> list[list[float]]:
    """Per layer, the mean expert shares over the logged windows of the last `fraction`."""
    steps, loads = load_history(rows)
    cut = steps[-1] * (1 - fraction)
    late = [load for step, load in zip(steps, loads, strict=True) if step > cut]
    n_layers, n_experts = len(late[0]), len(late[0][0])
    return [[sum(w[layer][e] for w in late) / len(late) for e in range(n_experts)]
            for layer in range(n_layers)]


def entropy(shares: list[float]) -> float:
    """-sum_i f_i ln f_i (0 ln 0 = 0)."""
    return -sum(f * math.log(f) for f in shares if f > 0)


def summarize(rows: list[dict], wall: float) -> dict:
    shares = late_loads(rows)
    vals = [r["val_loss"] for r in rows if "val_loss" in r]
    first = next(r for r in rows if "expert_load" in r)
    return {
        "val_loss": vals[-1], "train_time_s": rows[-1].get("train_time_s"),
        "wall_s": round(wall, 1),
        "entropy_per_layer": [round(entropy(s), 4) for s in shares],
        "min_share_per_layer": [round(min(s), 4) for s in shares],
        "max_share_per_layer": [round(max(s), 4) for s in shares],
        "late_shares": [[round(f, 4) for f in s] for s in shares],
        "first_window_entropy": [round(entropy(s), 4) for s in first["expert_load"]],
    }


def run_method(method: str, out: Path, args) -> None:
    """One training run (in a child process, so the methods run side by side)."""
    overrides = [*METHODS[method], f"train.steps={args.steps}",
                 f"train.threads={args.threads}", f"log_every={args.log_every}",
                 f"train.eval_every={args.steps // 4}", "train.eval_iters=10",
                 f"train.checkpoint_every={args.steps}", f"train.seed={args.seed}"]
    train("moe-tiny", out, overrides=overrides, show_progress=False)


def run_all(args, root: Path) -> dict[str, float]:
    """Start one child per method (1 thread each), wait; wall seconds per method."""
    script, start, walls = str(Path(__file__).resolve()), time.perf_counter(), {}
    common = ["--steps", str(args.steps), "--threads", str(args.threads),
              "--log-every", str(args.log_every), "--seed", str(args.seed)]
    children = {m: subprocess.Popen([sys.executable, script, "--child", m, "--dir",
                                     str(root / m), *common]) for m in METHODS}
    for method, child in children.items():
        if child.wait() != 0:
            raise SystemExit(f"the {method} run failed")
        walls[method] = time.perf_counter() - start
    return walls


def picture(histories: dict[str, list], path: Path) -> None:
    from matplotlib.figure import Figure

    n_layers = len(load_history(next(iter(histories.values())))[1][0])
    fig = Figure(figsize=(2.7 * n_layers + 0.5, 2.4 * len(histories)), layout="constrained")
    axes = fig.subplots(len(histories), n_layers, squeeze=False, sharex=True)
    for row, (method, rows) in zip(axes, histories.items(), strict=True):
        steps, loads = load_history(rows)
        draw_expert_loads(list(row), steps, loads, title=f"{method}: ")
    fig.suptitle("expert shares over training (8 experts, top-2; each band one expert)")
    fig.savefig(path, format="png", dpi=90)


def table(results: dict) -> str:
    base = results["none"]["val_loss"]
    lines = [f"{'method':<16} {'val loss':>9} {'vs none':>8} {'entropy/layer (max 2.079)':>36} "
             f"{'min share':>26} {'max share':>26} {'train s':>8}"]
    for method, r in results.items():
        ent = " ".join(f"{h:.3f}" for h in r["entropy_per_layer"])
        lo = " ".join(f"{v:.3f}" for v in r["min_share_per_layer"])
        hi = " ".join(f"{v:.3f}" for v in r["max_share_per_layer"])
        lines.append(f"{method:<16} {r['val_loss']:>9.4f} {r['val_loss'] / base:>8.4f} "
                     f"{ent:>36} {lo:>26} {hi:>26} {r['train_time_s']:>8.1f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=240)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--child", choices=list(METHODS), help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return run_method(args.child, args.dir, args)
    results, histories = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        walls = run_all(args, Path(tmp))
        # Each run trains its BPE tokenizer on the same texts: check they are identical.
        tokenizers = {(Path(tmp) / m / "tokenizer.json").read_bytes() for m in METHODS}
        assert len(tokenizers) == 1, "the runs did not share one tokenizer"
        for method in METHODS:
            histories[method] = read_metrics(Path(tmp) / method)
            results[method] = summarize(histories[method], walls[method])
    RESULTS.mkdir(parents=True, exist_ok=True)
    picture(histories, RESULTS / "moe_balance.png")
    report = {"benchmark": "moe_balance", "recipe": "moe-tiny", "steps": args.steps,
              "threads_per_run": args.threads, "seed": args.seed,
              "max_entropy": math.log(8), "ideal_share": 1 / 8,
              "machine": platform.processor() or platform.machine(),
              "torch": torch.__version__, "results": results,
              "curves": {m: [{k: r[k] for k in ("step", "expert_load", "load_entropy")}
                             for r in rows if "expert_load" in r]
                         for m, rows in histories.items()}}
    (RESULTS / "moe_balance.json").write_text(json.dumps(report, indent=1) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
