"""Long fuzzing run of parrot's loaders: executions, outcomes and rule breaks per target.

    PYTHONPATH=src python benchmarks/fuzz_loaders.py --seconds 60 [--atheris-seconds 30]

For each target of tests/fuzz/fuzz_targets.py (GGUF, safetensors, config.json for run
directories and Hugging Face folders, tokenizer.json as BPE / WordPiece / SentencePiece,
chat messages, SFT JSONL) it runs the structure-aware mutator from the valid seed for
`--seconds`, then (if atheris is installed) atheris's coverage-guided libFuzzer for
`--atheris-seconds` in a subprocess. The rules: only ParrotError escapes, no input over
10 s, and peak RSS grows by less than 1 GB. Writes benchmarks/results/fuzz_loaders.json
and prints a table. (There is no peer to compare against: this reports robustness.)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "fuzz"))

from fuzz_targets import (  # noqa: E402
    TARGETS,
    RuleBroken,
    limit_memory,
    mutate,
    rss_bytes,
    run_one,
)

RESULTS = ROOT / "benchmarks" / "results" / "fuzz_loaders.json"

ATHERIS_HARNESS = """
import sys, tempfile, atheris
from pathlib import Path
sys.path.insert(0, {fuzz_dir!r})
import numpy, torch, jinja2, safetensors, tokenizers, regex  # libraries: not instrumented
with atheris.instrument_imports():
    import parrot.hub.gguf_parse, parrot.tokenizer, parrot.chat, parrot.data.sft, parrot.rundir
from fuzz_targets import TARGETS, run_one
target, tmp = TARGETS[{name!r}], Path(tempfile.mkdtemp())
def one(data):
    run_one(target, data, tmp)
atheris.Setup([sys.argv[0], "-max_total_time={seconds}", "-rss_limit_mb=3072",
               "-timeout=10", "-print_final_stats=1", {corpus!r}], one)
atheris.Fuzz()
"""


def mutation_run(name: str, seed_input: bytes, seconds: float, seed: int) -> dict:
    """The structure-aware mutator from the seed (and from inputs that loaded fine)."""
    target, rng = TARGETS[name], random.Random(seed)
    pool = [seed_input]
    counts = {"ok": 0, "refused": 0}
    breaks: dict[str, str] = {}
    slowest = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        try:  # warm-up: one-off imports (sympy through torch's meta device) are not the input's
            run_one(target, seed_input, Path(tmp))
        except RuleBroken:
            pass
        start_rss, deadline = rss_bytes(), time.monotonic() + seconds
        while time.monotonic() < deadline:
            data = mutate(target, rng.choice(pool), rng)
            t0 = time.perf_counter()
            try:
                outcome = run_one(target, data, Path(tmp))
            except RuleBroken as err:
                key = re.sub(r"\d+", "N", str(err))[:160] + _where(err)
                breaks.setdefault(key, data[:2000].hex())
                outcome = "broken"
            slowest = max(slowest, time.perf_counter() - t0)
            counts[outcome] = counts.get(outcome, 0) + 1
            if outcome == "ok" and len(pool) < 64 and len(data) < 1 << 20:
                pool.append(data)
    return {"executions": sum(counts.values()), **counts, "slowest_s": slowest,
            "rss_growth_mb": (rss_bytes() - start_rss) / 2**20, "rule_breaks": breaks}


def _where(err: BaseException) -> str:
    """ ' @ file:line' of the innermost parrot frame that raised the escaped exception."""
    cause = err.__cause__
    if cause is None:
        return ""
    frames = [f for f in traceback.extract_tb(cause.__traceback__) if "/parrot/" in f.filename]
    return f" @ {frames[-1].filename.split('/parrot/')[-1]}:{frames[-1].lineno}" if frames else ""


def atheris_run(name: str, seconds: int) -> dict:
    """atheris (libFuzzer) on raw bytes, seeded with the target's valid file."""
    with tempfile.TemporaryDirectory() as corpus:
        Path(corpus, "seed").write_bytes(TARGETS[name].seed())
        code = ATHERIS_HARNESS.format(fuzz_dir=str(ROOT / "tests" / "fuzz"), name=name,
                                      seconds=seconds, corpus=corpus)
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
        try:
            done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                  text=True, env=env, timeout=seconds + 180)
        except subprocess.TimeoutExpired as err:
            return {"executions": 0, "returncode": None,
                    "rule_break": f"atheris did not finish: {str(err.stderr)[-200:]}"}
    stats = dict(re.findall(r"stat::(\w+):\s+(\d+)", done.stderr))
    crash = re.search(r"(RuleBroken: .*|==\d+== ERROR: .*)", done.stderr)
    return {"executions": int(stats.get("number_of_executed_units", 0)),
            "peak_rss_mb": int(stats.get("peak_rss_mb", 0)), "returncode": done.returncode,
            "rule_break": crash.group(1)[:300] if crash else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="per target, mutator")
    parser.add_argument("--atheris-seconds", type=int, default=30, help="per target (0: off)")
    parser.add_argument("--targets", nargs="*", default=list(TARGETS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        import atheris  # noqa: F401
        has_atheris = args.atheris_seconds > 0
    except ImportError:
        has_atheris = False
    import torch

    torch.set_num_threads(1)
    seeds = {name: TARGETS[name].seed() for name in args.targets}  # before the cap
    limit_memory()
    results = {}
    print(f"{'target':26} {'execs':>8} {'ok':>7} {'refused':>8} {'broken':>7} {'slowest s':>9} "
          f"{'RSS +MB':>8} {'atheris execs':>13}")
    for name in args.targets:
        row = mutation_run(name, seeds[name], args.seconds, args.seed)
        if has_atheris:
            row["atheris"] = atheris_run(name, args.atheris_seconds)
        results[name] = row
        ath = row.get("atheris", {}).get("executions", "-")
        print(f"{name:26} {row['executions']:8d} {row['ok']:7d} {row['refused']:8d} "
              f"{row.get('broken', 0):7d} {row['slowest_s']:9.2f} {row['rss_growth_mb']:8.1f} "
              f"{ath:>13}", flush=True)
        for key in row["rule_breaks"]:
            print(f"    BROKEN: {key}")
        if row.get("atheris", {}).get("rule_break"):
            print(f"    ATHERIS: {row['atheris']['rule_break']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"seconds_per_target": args.seconds,
                                   "atheris_seconds_per_target": args.atheris_seconds
                                   if has_atheris else 0, "targets": results}, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
