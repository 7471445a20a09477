"""Before against after a refactor, in one run: SmolLM2 decode and prefill, shakespeare-best
time to validation loss 1.886, and the fast test suite's wall time.

    PARROT_HOME=... python benchmarks/bench_spine.py --before /tmp/parrot-before [--rounds 3]

`--before` is a checkout of the earlier commit (e.g. `git worktree add /tmp/parrot-before
REV`). Each tree runs through its own CLI (`python -m parrot` with PYTHONPATH=TREE/src) with
this virtual environment's Python, so the comparison needs no API the old tree lacks.
SmolLM2 rounds alternate before/after (2 threads, greedy, 128 new tokens after a prompt of
about 500 tokens); the two shakespeare-best runs train side by side on one thread each; the
test suites run one after the other. Writes benchmarks/results/spine.json and a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "spine.json"
SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
TARGET = 1.886
PROMPT = ("Write a long, careful essay about the history of the printing press, its effect on "
          "science, religion and politics in Europe, and what it teaches us about the internet. ")


def env_for(tree: Path, threads: int | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def parrot(tree: Path, *argv: str, threads: int | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "parrot", *argv], env=env_for(tree, threads),
                          cwd=tree, capture_output=True, text=True, check=True)


def smollm2_round(tree: Path) -> dict[str, float]:
    out = parrot(tree, "generate", "smollm2-135m-instruct", "--prompt", PROMPT * 18,
                 "--max-new-tokens", "128", "--temperature", "0", "--json", threads=2)
    stats = json.loads(out.stdout)["stats"]
    return {"prefill": stats["prefill_tokens_per_s"], "decode": stats["decode_tokens_per_s"],
            "prompt_tokens": stats["prompt_tokens"]}


def start_shakespeare(tree: Path, out: Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "parrot", "train", "--preset", "shakespeare-best", "--data",
            str(SHAKESPEARE), "--out", str(out), "--set", "train.threads=1", "--quiet"]
    return subprocess.Popen(argv, env=env_for(tree, 1), cwd=tree, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def time_to_target(run: Path) -> dict[str, float | None]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    hit = next((r for r in rows if r.get("val_loss", 9e9) <= TARGET), None)
    last = [r["val_loss"] for r in rows if "val_loss" in r][-1]
    return {"train_time_s": hit["train_time_s"] if hit else None,
            "step": hit["step"] if hit else None, "final_val_loss": last}


def fast_suite(tree: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", "-m", "not slow", "-n", "2", "-q",
                    "-p", "no:cacheprovider"], env=env_for(tree), cwd=tree,
                   capture_output=True, text=True, check=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, default=ROOT)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-suite", action="store_true")
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    results: dict[str, dict] = {name: {"smollm2": []} for name in trees}
    for tree in trees.values():  # warm-up: builds each tree's kernels, fills the page cache
        smollm2_round(tree)
    for _ in range(args.rounds):
        for name, tree in trees.items():
            results[name]["smollm2"].append(smollm2_round(tree))
    with tempfile.TemporaryDirectory() as tmp:
        runs = {name: start_shakespeare(tree, Path(tmp) / name) for name, tree in trees.items()}
        for name, process in runs.items():
            if process.wait() != 0:
                raise SystemExit(f"shakespeare-best failed in {name}: {process.stderr.read()}")
            results[name]["shakespeare"] = time_to_target(Path(tmp) / name)
    if not args.skip_suite:
        for name, tree in trees.items():
            results[name]["fast_suite_s"] = fast_suite(tree)
    summary = summarize(results)
    RESULTS.write_text(json.dumps({"results": results, "summary": summary}, indent=2) + "\n")
    print_table(summary)
    return 0


def summarize(results: dict[str, dict]) -> dict[str, dict[str, float | None]]:
    rows: dict[str, dict[str, float | None]] = {}
    for key in ("prefill", "decode"):
        rows[f"smollm2 {key} tok/s (median)"] = {
            name: statistics.median(r[key] for r in res["smollm2"]) for name, res in results.items()}
    rows["shakespeare-best train s to 1.886"] = {
        name: res["shakespeare"]["train_time_s"] for name, res in results.items()}
    if "fast_suite_s" in results["before"]:
        rows["fast suite wall s"] = {name: res["fast_suite_s"] for name, res in results.items()}
    for row in rows.values():
        before, after = row["before"], row["after"]
        row["after/before"] = after / before if before and after else None
    return rows


def print_table(summary: dict[str, dict[str, float | None]]) -> None:
    print(f"{'measure':38} {'before':>10} {'after':>10} {'after/before':>13}")
    for name, row in summary.items():
        cells = [f"{row[k]:10.2f}" if row[k] is not None else f"{'-':>10}"
                 for k in ("before", "after")]
        ratio = f"{row['after/before']:13.3f}" if row["after/before"] else f"{'-':>13}"
        print(f"{name:38} {cells[0]} {cells[1]} {ratio}")


if __name__ == "__main__":
    raise SystemExit(main())
