"""Peak memory per rank, FSDP against DDP, for a model 4x larger than `tiny`.

    PYTHONPATH=src python benchmarks/bench_fsdp_memory.py [--ranks 2] [--steps 10]

`tiny` (gpt-tiny: d_model 128, 4 layers) has 0.83M parameters; d_model 256 gives 3.2M
(3.9x; 4x in every layer). Each strategy trains the same run under torchrun on CPU/gloo
through `parrot train --strategy ...`, with a hook that records on every rank, after the
last step: the bytes this rank holds for parameters and AdamW moments (local shards under
FSDP), the gradient bytes it held in backward (the same as its parameters), and its peak
RSS. Also a single process as the baseline. Writes benchmarks/results/bench_fsdp_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_fsdp_memory.json"
SETTINGS = ["data.tokenizer=bytes", "model.n_layers=4",
            "model.context_length=64", "train.batch_size=8", "train.log_every=5",
            "train.eval_every=1000", "train.eval_iters=1", "train.checkpoint_every=1000",
            "train.warmup=2", "train.threads=1"]


def tensor_bytes(t) -> int:
    local = getattr(t, "_local_tensor", t)  # a DTensor's shard on this rank
    return local.numel() * local.element_size()


def worker(out: str, steps: int, strategy: str, d_model: int) -> None:
    """Runs on every rank (torchrun) or alone: the training and the measurement hook."""
    sys.path.insert(0, str(ROOT / "src"))
    from parrot.training.loop import Hook
    from parrot.training.runner import train

    class Measure(Hook):
        def after_step(self, loop, state) -> None:
            if state.step != steps:
                return
            params = [p for p in loop.raw.parameters()]
            moments = [v for s in loop.optimizer.state.values() for v in s.values()
                       if hasattr(v, "numel") and v.dim() > 0]
            row = {"rank": loop.dist.rank,
                   "param_mb": sum(map(tensor_bytes, params)) / 2**20,
                   "grad_mb": sum(tensor_bytes(p) for p in params if p.requires_grad) / 2**20,
                   "adam_moments_mb": sum(map(tensor_bytes, moments)) / 2**20,
                   "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   "parameters": sum(p.numel() for p in loop.raw.parameters())}
            Path(out, f"memory-{loop.dist.rank}.json").write_text(json.dumps(row))

    text = Path(out).parent / "text.txt"
    train("tiny", Path(out) / "run", data=[text], show_progress=False, hooks=[Measure()],
          overrides=[*SETTINGS, f"train.steps={steps}", f"train.strategy={strategy}",
                     f"model.d_model={d_model}"])


def measure(strategy: str, ranks: int, steps: int, work: Path, d_model: int) -> list[dict]:
    out = work / f"{strategy}-{ranks}"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    launch = [sys.executable] if ranks == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={ranks}"]
    done = subprocess.run([*launch, __file__, "--worker", str(out), "--steps", str(steps),
                           "--strategy", strategy, "--d-model", str(d_model)], env=env, capture_output=True, text=True,
                          timeout=900)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return [json.loads((out / f"memory-{r}.json").read_text()) for r in range(ranks)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--d-model", type=int, default=256,
                        help="model width (256: 4x tiny's parameters)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--strategy", default="ddp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.steps, args.strategy, args.d_model)
    sys.path.insert(0, str(ROOT / "tests" / "training"))
    from train_helpers import write_text

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        write_text(Path(tmp) / "text.txt", n_words=20000)
        for name, strategy, ranks in (("single", "ddp", 1), ("ddp", "ddp", args.ranks),
                                      ("fsdp", "fsdp", args.ranks)):
            results[name] = measure(strategy, ranks, args.steps, Path(tmp), args.d_model)
    print(f"{'strategy':9} {'rank':>4} {'params MB':>10} {'grads MB':>9} {'AdamW MB':>9} "
          f"{'state total MB':>15} {'peak RSS MB':>12}")
    for name, rows in results.items():
        for r in rows:
            total = r["param_mb"] + r["grad_mb"] + r["adam_moments_mb"]
            r["state_total_mb"] = total
            print(f"{name:9} {r['rank']:4d} {r['param_mb']:10.2f} {r['grad_mb']:9.2f} "
                  f"{r['adam_moments_mb']:9.2f} {total:15.2f} {r['peak_rss_mb']:12.1f}")
    ddp, fsdp = results["ddp"][0]["state_total_mb"], results["fsdp"][0]["state_total_mb"]
    summary = {"parameters": results["single"][0]["parameters"], "ranks": args.ranks,
               "d_model": args.d_model,
               "fsdp_over_ddp_state_per_rank": fsdp / ddp,
               "fsdp_over_ddp_peak_rss_rank0": results["fsdp"][0]["peak_rss_mb"]
               / results["ddp"][0]["peak_rss_mb"]}
    print(f"FSDP/DDP training state per rank: {summary['fsdp_over_ddp_state_per_rank']:.3f}; "
          f"peak RSS rank 0: {summary['fsdp_over_ddp_peak_rss_rank0']:.3f}")
    path = RESULTS if args.d_model == 256 else RESULTS.with_name(
        f"bench_fsdp_memory_d{args.d_model}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"summary": summary, **results}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
