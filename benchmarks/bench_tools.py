"""Word-problem accuracy of SmolLM2-135M-Instruct by prompting strategy, before and after
LoRA-tuning it on generated tool traces, and the cost of constrained decoding.

    PARROT_HOME=... python benchmarks/bench_tools.py [--problems 300] [--stages ...]

Stages (each result is saved as it finishes, so a killed run resumes where it stopped):
- `base`: direct, zero-shot CoT, few-shot CoT and PAL with the base model, on the held-out
  templates' problems (greedy);
- `tune`: LoRA on PAL and ReAct traces of the *training* templates (parrot finetune);
- `tuned`: PAL and ReAct with the tuned model;
- `constrain`: decode tokens/s of a JSON-schema-constrained batch against the same batch
  unconstrained (same prompts, temperature 1, same seeds), interleaved rounds.

Writes benchmarks/results/tools.json and prints a table with Wilson 95% intervals.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "tools.json"
WORK = ROOT / "benchmarks" / "results" / "tools_work"
MODEL = "smollm2-135m-instruct"
TOKENS = {"direct": 48, "cot": 192, "few-shot-cot": 192, "pal": 160, "react": 96}


def wilson(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default)."""
    if total == 0:
        return 0.0, 0.0
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return centre - half, centre + half


def load_results() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {"accuracy": {}}


def save(results: dict) -> None:
    from parrot.utils.atomic import atomic_write_json

    atomic_write_json(RESULTS, results)


def evaluate(llm, strategy: str, problems, label: str) -> dict:
    from parrot.tools.builtin import registry_for
    from parrot.tools.prompting import ask_batch, is_correct
    from parrot.tools.react import run_react

    questions = [p.question for p in problems]
    start = time.perf_counter()
    if strategy == "react":
        answers = [t.answer for t in run_react(llm, questions, registry_for(["calculator"]),
                                               max_steps=5, temperature=0.0,
                                               max_new_tokens=TOKENS["react"])]
    else:
        answers = [a.answer for a in ask_batch(llm, questions, strategy, temperature=0.0,
                                               max_new_tokens=TOKENS[strategy])]
    correct = sum(is_correct(a, p.answer) for a, p in zip(answers, problems, strict=True))
    low, high = wilson(correct, len(problems))
    print(f"{label:>24} {strategy:>13}: {correct}/{len(problems)} "
          f"({time.perf_counter() - start:.0f} s)", flush=True)
    return {"correct": correct, "total": len(problems), "accuracy": correct / len(problems),
            "ci95": [low, high], "seconds": time.perf_counter() - start}


def stage_eval(results: dict, model: str, label: str, strategies: list[str], count: int) -> None:
    import parrot
    from parrot.data.word_problems import generate

    problems = generate(count, "held_out", seed=0)
    llm = parrot.load(model, max_batch=16)
    for strategy in strategies:
        key = f"{label}/{strategy}"
        if key not in results["accuracy"]:
            results["accuracy"][key] = evaluate(llm, strategy, problems, label)
            save(results)


def stage_tune(results: dict, traces: int, steps: int) -> Path:
    import parrot
    from parrot.tools.traces import write_traces

    out = WORK / "tool-lora"
    if "tune" in results:
        return out
    data = write_traces(WORK / "traces.jsonl", traces)
    resume = out.exists()  # a killed tuning run continues from its last checkpoint
    result = parrot.finetune(MODEL, data, out, method="lora", resume=resume, steps=steps,
                             batch_size=8, lr=2e-3)
    results["tune"] = {"traces": 2 * traces, "steps": steps, "train_time_s": result.train_time_s,
                       "final_val_loss": result.final_val_loss}
    save(results)
    return out


def stage_constrain(results: dict, rounds: int = 3) -> None:
    import parrot

    llm = parrot.load(MODEL, max_batch=8)
    schema = {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 24}, "age": {"type": "integer"},
        "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 24},
                    "maxItems": 3}}, "required": ["name", "age", "hobbies"]}
    prompt = llm.chat_prompt([{"role": "user", "content":
                               "Describe a fictional person as JSON with name, age, hobbies."}])
    llm.generate_batch([prompt] * 8, json_schema=schema, max_new_tokens=64, seed=0)  # warm-up
    rates = {"constrained": [], "unconstrained": []}
    for r in range(rounds):
        for kind in ("unconstrained", "constrained"):
            start = time.perf_counter()
            outs = llm.generate_batch([prompt] * 8, json_schema=schema if kind == "constrained"
                                      else None, temperature=1.0, max_new_tokens=64, seed=r,
                                      ignore_eos=kind == "unconstrained")
            tokens = sum(len(c.token_ids) for c in outs)
            rates[kind].append(tokens / (time.perf_counter() - start))
    medians = {k: statistics.median(v) for k, v in rates.items()}
    results["constrain"] = {"tokens_per_s": medians, "rounds": rates,
                            "ratio": medians["constrained"] / medians["unconstrained"]}
    save(results)


def table(results: dict) -> str:
    rows = ["| model | strategy | correct | accuracy | 95% interval |", "|---|---|---|---|---|"]
    for key, r in results["accuracy"].items():
        label, strategy = key.split("/")
        rows.append(f"| {label} | {strategy} | {r['correct']}/{r['total']} | "
                    f"{r['accuracy']:.3f} | [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] |")
    if "constrain" in results:
        c = results["constrain"]["tokens_per_s"]
        rows.append(f"\nconstrained decode {c['constrained']:.1f} tok/s, unconstrained "
                    f"{c['unconstrained']:.1f} tok/s: {results['constrain']['ratio']:.2f}x")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=300)
    parser.add_argument("--traces", type=int, default=800)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--stages", default="base,tune,tuned,constrain")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    WORK.mkdir(parents=True, exist_ok=True)
    results, stages = load_results(), args.stages.split(",")
    if "base" in stages:
        stage_eval(results, MODEL, "base", ["direct", "cot", "few-shot-cot", "pal"], args.problems)
    if "tune" in stages or "tuned" in stages:
        tuned = stage_tune(results, args.traces, args.steps)
        if "tuned" in stages:
            stage_eval(results, str(tuned), "tool-tuned", ["pal", "react"], args.problems)
    if "constrain" in stages:
        stage_constrain(results)
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
