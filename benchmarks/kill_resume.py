"""kill -9 at random moments, again and again, then resume: the result must equal the
uninterrupted run bit for bit (pretraining and LoRA fine-tuning).

    PYTHONPATH=src python benchmarks/kill_resume.py --kills 20

For each kind, one uninterrupted run is the reference and sets the time scale T (its wall
time, process start-up included). Then a run is started and killed with SIGKILL after a
delay drawn uniformly from [0, T]: during start-up, training, evaluation or a checkpoint
write. It is resumed (or started afresh if it died before its first checkpoint) and
killed again, `--kills` times, then allowed to finish. Every metric row and every saved
tensor must equal the reference exactly. Writes benchmarks/results/kill_resume.json.
(Indexing, #19, is built in parallel and is not covered here.)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "kill_resume.json"
PRETRAIN = ["data.tokenizer=bytes", "model.d_model=32", "model.n_layers=2",
            "model.context_length=16", "train.batch_size=4", "log_every=1", "train.warmup=3",
            "train.eval_iters=2", "train.threads=1", "train.steps=40",
            "train.checkpoint_every=4", "train.eval_every=10"]
LORA = ["train.steps=40", "train.batch_size=4", "train.log_every=1", "train.eval_every=10",
        "train.checkpoint_every=4", "train.threads=1"]


def setup(work: Path) -> dict[str, list[str]]:
    """The command lines (without --out / --resume) of the two kinds of run."""
    sys.path.insert(0, str(ROOT / "tests" / "training"))
    from test_train_fsdp import make_base, write_chats
    from train_helpers import write_text

    data = write_text(work / "text.txt")
    base, chats = make_base(work / "base"), write_chats(work / "chats.jsonl")
    sets = lambda items: [x for s in items for x in ("--set", s)]  # noqa: E731
    return {
        "pretraining": ["train", "--preset", "tiny", "--data", str(data), *sets(PRETRAIN)],
        "lora_finetuning": ["finetune", str(base), "--data", str(chats), "--method", "lora",
                            "--rank", "4", *sets(LORA)],
    }


def launch(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "parrot", *args, "--quiet"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finished(out: Path) -> dict:
    """What must match: every metric row but timings, and every saved tensor's bytes."""
    from safetensors.torch import load_file

    rows = [{k: v for k, v in json.loads(line).items() if "time" not in k and "per_s" not in k}
            for line in (out / "metrics.jsonl").read_text().splitlines()]
    weights = next(p for p in (out / "model.safetensors", out / "adapter.safetensors")
                   if p.is_file())
    tensors = {k: v.numpy().tobytes() for k, v in load_file(str(weights)).items()}
    return {"rows": rows, "tensors": tensors}


def killed_run(args: list[str], out: Path, kills: int, scale: float, rng: random.Random,
               total_steps: int) -> list[dict]:
    """Start, kill -9 after a random delay, resume, ... `kills` times; then finish."""
    log = []
    while True:
        resume = (out / "checkpoint.pt").is_file()
        if not resume and out.exists():
            shutil.rmtree(out)  # died before its first checkpoint: start again
        proc = launch([*(_without_sets(args) if resume else args), "--out", str(out),
                       *(["--resume"] if resume else [])])
        if len(log) == kills:
            _, err = proc.communicate(timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"the final resume failed: {err[-2000:]}")
            return log
        # a delay within what is left of the run (start-up included)
        left = 1 - (_last_step(out) or 0) / total_steps if resume else 1.0
        delay = rng.uniform(0, scale * max(left, 0.25))
        try:
            proc.wait(timeout=delay)
            if proc.returncode != 0:
                raise RuntimeError(f"a run failed on its own: {proc.stderr.read()[-2000:]}")
            shutil.rmtree(out)  # it finished before the kill came: start again, uncounted
            continue
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        step = _last_step(out)
        log.append({"delay_s": round(delay, 3), "resumed_from_checkpoint": resume,
                    "last_logged_step": step})


def _without_sets(args: list[str]) -> list[str]:
    """A resumed run keeps its saved settings: the command without its --set pairs."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == "--set":
            skip = True
        else:
            out.append(a)
    return out


def _last_step(out: Path) -> int | None:
    try:
        lines = (out / "metrics.jsonl").read_text().splitlines()
        return json.loads(lines[-1])["step"] if lines else None
    except (OSError, ValueError, KeyError):
        return None


def run_kind(name: str, args: list[str], work: Path, kills: int, seed: int) -> dict:
    t0 = time.perf_counter()
    proc = launch([*args, "--out", str(work / f"{name}-whole")])
    _, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"the reference {name} run failed: {err[-2000:]}")
    scale = time.perf_counter() - t0
    reference = finished(work / f"{name}-whole")
    steps = max(r["step"] for r in reference["rows"])
    log = killed_run(args, work / f"{name}-killed", kills, scale, random.Random(seed), steps)
    result = finished(work / f"{name}-killed")
    return {"reference_wall_s": scale, "kills": len(log),
            "kill_log": log, "rows_equal": result["rows"] == reference["rows"],
            "tensors_equal": result["tensors"] == reference["tensors"],
            "rows": len(reference["rows"]), "tensors": len(reference["tensors"])}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", nargs="*", default=["pretraining", "lora_finetuning"])
    parser.add_argument("--no-write", action="store_true", help="do not write the JSON")
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        commands = setup(Path(tmp))
        for name in args.kinds:
            results[name] = run_kind(name, commands[name], Path(tmp), args.kills, args.seed)
            r = results[name]
            print(f"{name:16} kills {r['kills']:3d}  reference {r['reference_wall_s']:5.1f} s  "
                  f"rows equal {r['rows_equal']} ({r['rows']})  tensors equal "
                  f"{r['tensors_equal']} ({r['tensors']})", flush=True)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2))
        print(f"wrote {RESULTS}")
    return results


if __name__ == "__main__":
    main()
