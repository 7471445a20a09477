"""Perplexity against the fraction of heads pruned (importance order vs random order), and
decode tokens/s of the pruned models.

Data: the embedded corpus's validation documents (the last 10%, which `parrot train`
never trains on), split in two halves: head importance is measured on the first half,
perplexity on the second (never on the data the heads were chosen with). For each model
and each fraction the pruned model is built with `parrot.analysis.prune` (the function
`parrot prune` calls), importance order and `--seeds` random orders; decode tokens/s is
measured through `parrot.load(..., quantize="none")` on the same prompt, unpruned model
included, interleaved. Writes benchmarks/results/prune.json and prune.png.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_prune.py --model runs/tiny8 \
        --model smollm2-135m-instruct [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

import parrot
from parrot.analysis import prune
from parrot.data.corpus import embedded_corpus
from parrot.data.shards import split_documents
from parrot.eval.perplexity import evaluate_text
from parrot.hub.registry import REGISTRY

RESULTS = Path(__file__).resolve().parent / "results"
PROMPT = "The function returns a list of"


def halves(max_chars: int) -> tuple[Path, str]:
    """(file with the importance half, the evaluation half's text), each <= max_chars."""
    _, val = split_documents(embedded_corpus(), 0.1)
    middle = len(val) // 2
    first, second = "\n".join(val[:middle])[:max_chars], "\n".join(val[middle:])[:max_chars]
    path = Path(tempfile.mkdtemp()) / "importance.txt"
    path.write_text(first, encoding="utf-8")
    return path, second


def perplexity(model_path: str | Path, text: str, context: int) -> float:
    net, tokenizer, _ = parrot.load_model(model_path)
    ctx = min(context, net.config.context_length)
    return evaluate_text(net, tokenizer, text, ctx, ctx).perplexity


def decode_rate(model_path: str | Path, tokens: int) -> float:
    """Decode tokens/s (greedy, EOS ignored), the median of three generations."""
    llm = parrot.load(model_path, quantize="none", max_batch=1, max_len=256, log=None)
    rates = []
    for _ in range(3):
        done = llm.generate(PROMPT, max_new_tokens=tokens, temperature=0, ignore_eos=True)
        rates.append(done.stats.decode_tokens_per_s)
    return statistics.median(rates)


def fractions_for(model_path: str) -> list[tuple[float, str]]:
    """Every fraction the model allows: (fraction, unit) pairs."""
    cfg = parrot.load_model(model_path)[0].config
    rep, groups = cfg.n_heads // cfg.kv_heads, cfg.kv_heads
    out = [(k / rep, "query") for k in range(1, rep)] if rep > 1 else []
    return out + [(k / groups, "group") for k in range(1, groups)]


def study(model_path: str, importance_file: Path, text: str, seeds: int, context: int,
          work: Path, decode_tokens: int) -> dict:
    base = {"ppl": perplexity(model_path, text, context)}
    rows, paths = [], {"unpruned": model_path}
    for fraction, unit in fractions_for(model_path):
        for order, seed in [("importance", 0)] + [("random", s) for s in range(seeds)]:
            out = work / f"{Path(model_path).name}-{unit}-{fraction:.3f}-{order}-{seed}"
            prune(model_path, out, heads=fraction, data=[importance_file], unit=unit,
                  order=order, seed=seed, seq_len=min(context, 128), windows=8)
            rows.append({"fraction": fraction, "unit": unit, "order": order, "seed": seed,
                         "ppl": perplexity(out, text, context),
                         "parameters": parrot.load_model(out)[0].num_parameters()})
            print(f"  {model_path} {unit} {fraction:.2f} {order}/{seed}: ppl {rows[-1]['ppl']:.2f}",
                  flush=True)
            if order == "importance":
                paths[f"{unit} {fraction:.2f}"] = out
    speed = {name: [] for name in paths}
    for _ in range(2):  # interleaved rounds
        for name, path in paths.items():
            speed[name].append(decode_rate(path, decode_tokens))
    decode = {name: statistics.median(v) for name, v in speed.items()}
    return {"model": model_path, "base_ppl": base["ppl"], "rows": rows,
            "decode_tokens_per_s": decode}


def plot(studies: list[dict], out: Path) -> None:
    from parrot.viz.figure import new_figure, save_png

    fig = new_figure(5.0 * len(studies), 4.0)
    for ax, st in zip(fig.subplots(1, len(studies), squeeze=False)[0], studies, strict=True):
        for unit, marker in (("query", "o"), ("group", "s")):
            mine = [r for r in st["rows"] if r["unit"] == unit]
            if not mine:
                continue
            fr = sorted({r["fraction"] for r in mine})
            imp = [next(r["ppl"] for r in mine if r["fraction"] == f and r["order"] ==
                        "importance") for f in fr]
            rnd = [[r["ppl"] for r in mine if r["fraction"] == f and r["order"] == "random"]
                   for f in fr]
            ax.plot([0, *fr], [st["base_ppl"], *imp], marker + "-", label=f"importance ({unit})")
            ax.errorbar([0, *fr], [st["base_ppl"], *[statistics.mean(r) for r in rnd]],
                        yerr=[0, *[statistics.pstdev(r) for r in rnd]], fmt=marker + "--",
                        label=f"random, mean ± sd ({unit})", capsize=3)
        ax.set(yscale="log", xlabel="fraction of heads pruned", ylabel="held-out perplexity",
               title=Path(st["model"]).name)
        ax.legend(fontsize=7)
    save_png(fig, out, dpi=120)


def decode_only(model: str, pruned: list[str], tokens: int) -> None:
    paths = {"unpruned": model, **{Path(p).name: p for p in pruned}}
    speed: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(3):
        for name, path in paths.items():
            speed[name].append(decode_rate(path, tokens))
    rows = {name: {"median_tok_s": statistics.median(v), "runs": v,
                   "parameters": parrot.load_model(paths[name])[0].num_parameters()}
            for name, v in speed.items()}
    base = rows["unpruned"]["median_tok_s"]
    print(f"{'model':>48} {'params':>11} {'tok/s':>7} {'vs unpruned':>11}")
    for name, row in rows.items():
        print(f"{name:>48} {row['parameters']:>11} {row['median_tok_s']:>7.1f} "
              f"{row['median_tok_s'] / base:>10.2f}x")
    (RESULTS / "prune_decode.json").write_text(json.dumps(
        {"model": model, "threads": torch.get_num_threads(), "rows": rows,
         "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--max-chars", type=int, default=20000)
    parser.add_argument("--decode-tokens", type=int, default=48)
    parser.add_argument("--decode-only", nargs="+", metavar="PRUNED", default=None,
                        help="only time decoding of --model and these pruned run directories "
                             "(interleaved, 3 rounds); writes prune_decode.json")
    args = parser.parse_args()
    if args.decode_only:
        decode_only(args.model[0], args.decode_only, args.decode_tokens)
        return
    torch.manual_seed(0)
    importance_file, text = halves(args.max_chars)
    work = Path(tempfile.mkdtemp())
    studies = []
    for model in args.model:
        studies.append(study(model, importance_file, text, args.seeds, args.context, work,
                             args.decode_tokens))
        print(f"{model}: unpruned perplexity {studies[-1]['base_ppl']:.2f}")
        print(f"  {'model':>14} {'decode tok/s':>13} {'vs unpruned':>12}")
        dec = studies[-1]["decode_tokens_per_s"]
        for name, rate in dec.items():
            print(f"  {name:>14} {rate:>13.1f} {rate / dec['unpruned']:>11.2f}x")
    RESULTS.mkdir(exist_ok=True)
    record = {"models": studies, "threads": torch.get_num_threads(),
              "pulled": sorted(m for m in args.model if m in REGISTRY),
              "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (RESULTS / "prune.json").write_text(json.dumps(record, indent=1) + "\n")
    plot(studies, RESULTS / "prune.png")


if __name__ == "__main__":
    main()
