"""The vision-language model: what it answers, against whom, and how fast.

Trains `vlm-tiny` with `parrot.api.train` (what `parrot train --preset vlm-tiny` runs; one
seed, no tuning on the test splits) unless --run names a finished run, then reports:

  accuracy   per question kind on held-out scenes, on held-out colour-shape pairs and on
             scikit-learn's 450 test digits, read from the run's final metrics (the engine
             answering greedily, exact match), with Wilson 95% intervals; against
               blind     the same model given the question without the picture,
               blind_lm  the stage-1 language model (text only, before any picture),
               logreg    scikit-learn's LogisticRegression on the same 64 digit pixels and
                         the same train/test split (a reference point, not a peer).
  speed      time to first token with one picture through the engine (the encoder and the
             language model's prefill apart), a follow-up about the same picture (cached),
             and training images/s of the align and tune stages (from the run's metrics).

Writes benchmarks/results/vlm.json, vlm.png (accuracies) and vlm_attention.png (the
question's attention over a held-out picture), and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from parrot.api import load, train  # noqa: E402
from parrot.data.scenes import KINDS, digits_pixels, scenes  # noqa: E402
from parrot.rundir import read_metrics  # noqa: E402
from parrot.training.vlm_eval import chat_prompt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SPLITS = {"held-out scenes": "", "held-out pairs": "_combo", "sklearn digits": "_sklearn_digits"}
MODELS = {"with image": "acc_with_image", "blind": "acc_blind", "blind_lm": "acc_blind_lm"}


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion p over n trials."""
    if n == 0:
        return (0.0, 1.0)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def accuracy_rows(final: dict) -> list[dict]:
    """One row per (split, kind) with each model's accuracy, n and interval."""
    rows = []
    for split, suffix in SPLITS.items():
        for kind in KINDS:
            n = int(final.get(f"acc_with_image{suffix}_n_{kind}", 0))
            if n == 0:
                continue
            row = {"split": split, "kind": kind, "n": n}
            for name, prefix in MODELS.items():
                p = final.get(f"{prefix}{suffix}_{kind}")
                if p is not None:
                    row[name] = p
                    row[f"{name}_ci95"] = wilson(p, n)
            rows.append(row)
    return rows


def logistic_regression() -> dict:
    """LogisticRegression on the 64 raw pixels, scikit-learn's split of sklearn_digits."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    pixels, labels = digits_pixels()
    train_i, test_i = train_test_split(list(range(len(labels))), test_size=450,
                                       random_state=0, stratify=labels)
    fit = LogisticRegression(max_iter=5000).fit(pixels[train_i] / 16.0, labels[train_i])
    accuracy = float(fit.score(pixels[test_i] / 16.0, labels[test_i]))
    return {"accuracy": accuracy, "n": len(test_i), "ci95": wilson(accuracy, len(test_i))}


def time_to_first_token(run: Path, repeats: int) -> dict:
    """Median TTFT over `repeats` new pictures (encoder + prefill) and follow-ups."""
    llm = load(run, quantize="none", max_batch=1, log=None)
    pictures = [e.pixels for e in scenes("test", repeats + 1, seed=99)]
    question = chat_prompt(llm.tokenizer, "How many objects are there?", True)
    first, encode, follow, text_only = [], [], [], []
    for picture in pictures:
        one = llm.generate(question, images=[picture], temperature=0, max_new_tokens=1)
        first.append(one.stats.time_to_first_token_s)
        encode.append(one.stats.image_encode_s)
        more = question + one.text + "<|im_end|>\n<|im_start|>user\nAnd now?<|im_end|>\n"
        again = llm.generate(more, images=[picture], temperature=0, max_new_tokens=1)
        follow.append(again.stats.time_to_first_token_s)
        plain = llm.generate(chat_prompt(llm.tokenizer, "How many objects are there?", False),
                             temperature=0, max_new_tokens=1)
        text_only.append(plain.stats.time_to_first_token_s)
    first, encode = first[1:], encode[1:]  # the first call warms up
    ttft, enc = statistics.median(first), statistics.median(encode)
    return {"prompt_tokens": one.stats.prompt_tokens, "ttft_s": ttft, "encoder_s": enc,
            "prefill_s": ttft - enc, "follow_up_ttft_s": statistics.median(follow[1:]),
            "follow_up_cached_tokens": again.stats.cached_tokens,
            "text_only_ttft_s": statistics.median(text_only[1:]), "repeats": repeats}


def training_speed(run: Path) -> dict:
    """Images (examples) per second of training, from each stage's metrics."""
    config = json.loads((run / "stages" / "recipe.json").read_text())
    batch = config["train"]["batch_size"]
    out = {}
    for stage, folder in (("lm (text only)", run / "stages" / "lm"),
                          ("align", run / "stages" / "align"), ("tune", run)):
        rows = [r for r in read_metrics(folder) if "train_time_s" in r and "loss" in r]
        last = rows[-1]
        out[stage] = {"steps": last["step"], "train_time_s": last["train_time_s"],
                      "examples_per_s": last["step"] * batch / last["train_time_s"]}
    return out


def figures(rows: list[dict], logreg: dict, run: Path) -> None:
    from parrot.rundir import load_model
    from parrot.viz.figure import new_figure, save_png
    from parrot.viz.image_attention import patch_attention, patch_attention_figure

    fig = new_figure(11, 4)
    ax = fig.subplots()
    labels = [f"{r['kind']}\n{r['split'].split()[-1]}" for r in rows]
    for k, (name, colour) in enumerate((("with image", "#1f78b4"), ("blind", "#fdbf6f"),
                                        ("blind_lm", "#b2df8a"))):
        xs = [i + (k - 1) * 0.27 for i in range(len(rows))]
        ys = [r.get(name, 0.0) for r in rows]
        err = [[max(0.0, y - r.get(f"{name}_ci95", (y, y))[0]) for y, r in
                zip(ys, rows, strict=True)],
               [max(0.0, r.get(f"{name}_ci95", (y, y))[1] - y) for y, r in
                zip(ys, rows, strict=True)]]
        ax.bar(xs, ys, width=0.27, color=colour, label=name, yerr=err, capsize=2)
    ax.axhline(logreg["accuracy"], color="grey", ls="--", lw=1,
               label=f"logistic regression, sklearn digits ({logreg['accuracy']:.0%})")
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylabel("exact-match accuracy (95% CI)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8, loc="upper center", ncol=4, bbox_to_anchor=(0.5, 1.12))
    save_png(fig, RESULTS / "vlm.png")
    model, tokenizer, _ = load_model(run)
    example = next(e for e in scenes("test", 50, seed=7)
                   if any(q.kind == "colour" for q in e.questions))
    question = next(q.question for q in example.questions if q.kind == "colour")
    view = patch_attention(model, tokenizer, question, example.pixels)
    save_png(patch_attention_figure(view), RESULTS / "vlm_attention.png")
    print(f"attention picture: {question!r} on a scene of {example.caption}; "
          f"share on the picture by layer: {[round(float(s), 3) for s in view.image_share]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=Path("/tmp/bench-vlm/run"),
                        help="a finished vlm-tiny run (trained here when missing)")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not (args.run / "metrics.jsonl").is_file():
        start = time.perf_counter()
        train("vlm-tiny", args.run, show_progress=False)
        print(f"trained {args.run} in {time.perf_counter() - start:.0f} s (wall)")
    final = {k: v for r in read_metrics(args.run) for k, v in r.items() if k.startswith("acc")}
    rows, logreg = accuracy_rows(final), logistic_regression()
    speed = {"ttft": time_to_first_token(args.run, args.repeats),
             "training": training_speed(args.run)}
    print(f"{'split':16} {'kind':9} {'n':>4} {'image':>6} {'blind':>6} {'blindLM':>7}")
    for r in rows:
        print(f"{r['split']:16} {r['kind']:9} {r['n']:4d} {r['with image']:6.1%} "
              f"{r.get('blind', 0):6.1%} {r.get('blind_lm', 0):7.1%}")
    print(f"logistic regression on the sklearn digits: {logreg['accuracy']:.1%} "
          f"(95% CI {logreg['ci95'][0]:.1%}-{logreg['ci95'][1]:.1%})")
    t = speed["ttft"]
    print(f"TTFT with one picture ({t['prompt_tokens']} prompt tokens): {t['ttft_s'] * 1e3:.1f} ms"
          f" = encoder {t['encoder_s'] * 1e3:.1f} + prefill {t['prefill_s'] * 1e3:.1f}; "
          f"follow-up {t['follow_up_ttft_s'] * 1e3:.1f} ms ({t['follow_up_cached_tokens']} "
          f"cached); text only {t['text_only_ttft_s'] * 1e3:.1f} ms")
    for stage, s in speed["training"].items():
        print(f"training {stage}: {s['examples_per_s']:.0f} examples/s over {s['steps']} steps")
    figures(rows, logreg, args.run)
    result = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": 1,
                          "shared": "2 cores shared with other jobs while measured"},
              "overall": final, "rows": rows, "logistic_regression": logreg, "speed": speed}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "vlm.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
