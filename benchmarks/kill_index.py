"""kill -9 at random moments during `parrot rag index`, 20 times, then let it finish: the
store must hold exactly what one uninterrupted run writes (same chunks, texts, offsets and
vectors bit for bit), and every intermediate store must be consistent.

    PARROT_HOME=... python benchmarks/kill_index.py [--kills 20] [--copies 3]

Uses the real CLI and MiniLM on Python's own docs (`pydoc_data.topics`, several copies).
Writes benchmarks/results/kill_index.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "kill_index.json"


def write_docs(folder: Path, copies: int) -> int:
    """Every topic of Python's docs, `copies` times (each copy headed by its number, so
    every file has its own digest): enough work that each kill lands mid-job."""
    import pydoc_data.topics as topics

    count = 0
    for copy in range(copies):
        for name, text in sorted(topics.topics.items()):
            (folder / f"{copy}-{name}.md").write_text(f"Copy {copy}.\n\n{text}",
                                                      encoding="utf-8")
            count += 1
    return count


def files_done(db: Path) -> int:
    sys.path.insert(0, str(ROOT / "src"))
    from parrot.rag.sqlite_store import SqliteStore

    if not db.exists():
        return 0
    store = SqliteStore(db)
    done = len(store.files())
    store.close()
    return done


def index_command(docs: Path, db: Path) -> list[str]:
    return [sys.executable, "-m", "parrot", "rag", "index", str(docs), "--store", str(db)]


def contents(db: Path) -> list:
    """Files, chunks (path, offsets, text) and each chunk's vector bytes, in path order."""
    sys.path.insert(0, str(ROOT / "src"))
    from parrot.rag.sqlite_store import SqliteStore

    store = SqliteStore(db)
    con = store.conn
    files = sorted(con.execute("SELECT path, digest FROM files"))
    rows = list(con.execute("SELECT c.path, c.start_char, c.end_char, c.text, v.embedding "
                            "FROM chunks c JOIN vectors v ON v.rowid = c.id "
                            "ORDER BY c.path, c.start_char"))
    store.close()
    return [files, rows]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--min-s", type=float, default=8.0, help="earliest kill (after start-up)")
    parser.add_argument("--max-s", type=float, default=13.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    rng, log = random.Random(args.seed), []
    with tempfile.TemporaryDirectory() as tmp:
        docs, killed, fresh = Path(tmp, "docs"), Path(tmp, "killed.db"), Path(tmp, "fresh.db")
        docs.mkdir()
        total = write_docs(docs, args.copies)
        start = time.perf_counter()
        subprocess.run(index_command(docs, fresh), env=env, check=True, capture_output=True)
        full_s = time.perf_counter() - start
        for k in range(args.kills):
            delay = rng.uniform(args.min_s, args.max_s)
            proc = subprocess.Popen(index_command(docs, killed), env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(delay)
            was_running = proc.poll() is None
            if was_running:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            done = files_done(killed)
            log.append({"kill": k, "after_s": round(delay, 2), "killed": was_running,
                        "files_done": done})
            print(f"kill {k + 1}/{args.kills} after {delay:.2f} s (running: {was_running}), "
                  f"{done}/{total} files in the store", flush=True)
        subprocess.run(index_command(docs, killed), env=env, check=True, capture_output=True)
        equal = contents(killed) == contents(fresh)
    result = {"kills": sum(e["killed"] for e in log), "attempts": args.kills,
              "files": total, "mid_job_kills": sum(e["killed"] and e["files_done"] < total
                                                   for e in log), "uninterrupted_s": full_s, "equal_to_uninterrupted": equal,
              "log": log}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"{result['kills']} kills; final store equal to an uninterrupted run: {equal}")
    return result


if __name__ == "__main__":
    main()
