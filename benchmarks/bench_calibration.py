"""ECE before and after temperature scaling on held-out data, for SmolLM2 and a trained
tiny model, with reliability diagrams.

Two kinds of predictions per model, both from the embedded corpus's validation documents
(the last 10%, which `parrot train` never trains on):
  - next-token: up to --max-tokens predictions per split; T is fitted on the first half
    of the text, ECE measured on the second;
  - multiple choice: a generated continuation task (which of 4 six-word spans continues a
    passage; --items items, seed 0), choices scored by summed log-likelihood; T fitted on
    the first half of the items, measured on the second.
Runs `parrot.analysis.calibrate`, the function `parrot eval calibration` calls (here with
save=False, so nothing is written beside the models). Writes
benchmarks/results/calibration.json and calibration_<model>_<kind>.png.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_calibration.py \
        --model smollm2-135m-instruct --model runs/tiny8
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from parrot.analysis import calibrate
from parrot.data.corpus import embedded_corpus
from parrot.data.shards import split_documents
from parrot.eval.tasks import continuation_task, write_jsonl
from parrot.viz.calibration import figure_from_result
from parrot.viz.figure import save_png

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--max-chars", type=int, default=80000)
    args = parser.parse_args()
    _, val = split_documents(embedded_corpus(), 0.1)
    folder = Path(tempfile.mkdtemp())
    text = folder / "held_out.txt"
    text.write_text("\n".join(val)[: args.max_chars], encoding="utf-8")
    task = write_jsonl(folder / "continuation.jsonl", continuation_task(val, args.items, seed=0))
    rows = []
    print(f"{'model':>24} {'kind':>16} {'T':>6} {'ECE-w before':>12} {'after':>7} "
          f"{'ECE-m before':>12} {'after':>7} {'NLL before':>10} {'after':>7} {'acc':>6}")
    for model in args.model:
        for data in (text, task):
            result = calibrate(model, [data], fit=True, save=False, max_tokens=args.max_tokens)
            name = Path(model).name
            save_png(figure_from_result({**result, "model": name}),
                     RESULTS / f"calibration_{name}_{result['kind']}.png", dpi=110)
            b, a = result["before"], result["after"]
            print(f"{name:>24} {result['kind']:>16} {result['temperature']:>6.3f} "
                  f"{b['ece_width']:>12.4f} {a['ece_width']:>7.4f} {b['ece_mass']:>12.4f} "
                  f"{a['ece_mass']:>7.4f} {b['nll']:>10.4f} {a['nll']:>7.4f} "
                  f"{b['accuracy']:>6.3f}", flush=True)
            rows.append({k: v for k, v in result.items() if k != "bins"})
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "calibration.json").write_text(json.dumps(
        {"held_out": "embedded corpus validation documents", "items": args.items,
         "max_tokens": args.max_tokens, "results": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
