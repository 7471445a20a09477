"""A real preference task on SmolLM2-135M-Instruct: a reward model and DPO (LoRA).

No human preference data can be fetched here, so the experiment makes its own:

1. Prompts: "Hi, I'm NAME. QUESTION" from fixed lists of names and questions. Train prompts
   use train names x train questions, held-out prompts other names x other questions.
2. Answers: K samples per prompt from SmolLM2 (parrot's engine, batched, temperature 0.7,
   top-p 0.95, one seed per answer).
3. Judge (stands in for the human): does the answer address the user by the name they
   gave, i.e. contain NAME as a whole word? Deterministic, transparent, and a property the
   base model gets right only part of the time.
4. Pairs: every (named, unnamed) combination of one prompt's answers, chosen = named.
5. A LoRA reward model (parrot.reward_train) on the train pairs; accuracy on held-out pairs
   against the length-only baseline (its direction picked on the train pairs).
6. DPO with LoRA (parrot.dpo) on the train pairs; on held-out prompts, before and after:
   the judge's rate (95% interval: bootstrap over prompts), the reward model's mean reward,
   KL(π || π_ref), perplexity on held-out embedded-corpus text, three answers side by side.
7. Speed: one DPO step (cached reference log-probs) against one SFT step on the same
   batch, and against SFT on the chosen answers only (the cost per pair), interleaved.

    OMP_NUM_THREADS=1 PARROT_HOME=... python benchmarks/bench_preference.py [--work DIR]

Writes benchmarks/results/preference.json and preference_*.png; stages keep their
results in --work, so a rerun continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import statistics
import time
from pathlib import Path

import torch
from preference_report import judge_picture, print_table

import parrot
from parrot.infer import SamplingParams

RESULTS = Path(__file__).resolve().parent / "results"
MODEL = "smollm2-135m-instruct"
NAMES = ["Maya", "Tom", "Priya", "Lars", "Aiko", "Omar", "Elena", "Kofi", "Sofia", "Jonas",
         "Amara", "Diego", "Hana", "Ravi", "Chloe", "Mateo", "Ingrid", "Yusuf", "Nora",
         "Kenji", "Lena", "Tariq", "Zoe", "Pablo"]
QUESTIONS = ["What is a good way to learn to cook?", "How do I start running?",
             "Why is the sky blue?", "Can you suggest a book to read?",
             "How can I sleep better?", "What should I pack for a beach trip?",
             "How do plants grow?", "What is a healthy breakfast?",
             "How can I save money each month?", "What is a fun hobby to try?",
             "How do I make new friends in a new city?", "Why do cats purr?",
             "How can I focus better when I study?", "What is a good first programming language?",
             "How do I take care of a houseplant?", "What should I cook for dinner tonight?",
             "How can I stay calm before an exam?", "What is the moon made of?",
             "How do I write a thank-you note?", "What games can I play on a rainy day?"]
TRAIN_NAMES, HELD_NAMES = NAMES[:16], NAMES[16:]
TRAIN_QUESTIONS, HELD_QUESTIONS = QUESTIONS[:14], QUESTIONS[14:]
K, MAX_NEW, TEMPERATURE, TOP_P = 4, 40, 0.7, 0.95
N_TRAIN, N_HELD = 64, 32
TRAIN = {"steps": 40, "batch_size": 4, "log_every": 2, "eval_every": 10,
         "checkpoint_every": 10, "warmup": 4, "threads": 1}


def prompts(names: list[str], questions: list[str], n: int, seed: int) -> list[dict]:
    combos = [(a, q) for a in names for q in questions]
    random.Random(seed).shuffle(combos)
    return [{"name": a, "messages": [{"role": "user", "content": f"Hi, I'm {a}. {q}"}]}
            for a, q in combos[:n]]


def judge(answer: str, name: str) -> bool:
    """The stand-in human: the answer addresses the user by their name."""
    return re.search(rf"\b{re.escape(name)}\b", answer) is not None


def sample(llm: parrot.LLM, items: list[dict], seed: int) -> list[list[str]]:
    """K answers per prompt, one seed per answer, decoded together by the engine."""
    texts = [llm.chat_prompt(it["messages"]) for it in items for _ in range(K)]
    params = [SamplingParams(temperature=TEMPERATURE, top_p=TOP_P, max_new_tokens=MAX_NEW,
                             seed=seed + i, stop=llm.template.stop) for i in range(len(texts))]
    out = [c.text.strip() for c in llm.engine.generate_batch(texts, params)]
    return [out[i * K:(i + 1) * K] for i in range(len(items))]


def make_pairs(items: list[dict], answers: list[list[str]]) -> list[dict]:
    pairs = []
    for it, group in zip(items, answers, strict=True):
        named = [a for a in group if judge(a, it["name"])]
        plain = [a for a in group if not judge(a, it["name"])]
        pairs += [{"prompt": it["messages"], "chosen": c, "rejected": r}
                  for c in dict.fromkeys(named) for r in dict.fromkeys(plain)]
    return pairs


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def stage(work: Path, name: str, compute):
    """Run `compute` once; its JSON result is kept in WORK/name.json for reruns."""
    path = work / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    t0 = time.perf_counter()
    value = compute()
    print(f"[{name}] {time.perf_counter() - t0:.0f} s", flush=True)
    path.write_text(json.dumps(value))
    return value


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    """95% Wilson score interval of a proportion k/n."""
    if n == 0:
        return [0.0, 1.0]
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [centre - half, centre + half]


def bootstrap(per_prompt: list[list[float]], reps: int = 2000, seed: int = 0) -> list[float]:
    """95% percentile interval of the mean, resampling prompts (answers of one prompt
    are not independent)."""
    rng = random.Random(seed)
    means = []
    for _ in range(reps):
        picks = [per_prompt[rng.randrange(len(per_prompt))] for _ in per_prompt]
        flat = [v for group in picks for v in group]
        means.append(sum(flat) / len(flat))
    means.sort()
    return [means[int(0.025 * reps)], means[int(0.975 * reps) - 1]]


def summary(per_prompt: list[list[float]]) -> dict:
    flat = [v for g in per_prompt for v in g]
    return {"mean": sum(flat) / len(flat), "ci95": bootstrap(per_prompt), "n": len(flat)}


# ---- stages -------------------------------------------------------------------------

def base_samples(train_items: list[dict], held_items: list[dict]) -> dict:
    llm = parrot.load(MODEL, quantize="none", max_batch=16, log=None)
    return {"train": sample(llm, train_items, 0), "held": sample(llm, held_items, 1_000_000)}


def run_or_resume(train, out: Path, **kwargs):
    """A parrot training call, resumed when an earlier attempt left a checkpoint."""
    from parrot.viz.report import RunPictures

    resume = (out / "checkpoint.pt").is_file()
    settings = {} if resume else {**kwargs, **TRAIN}
    return train(out=out, resume=resume, hooks=[RunPictures()], show_progress=False,
                 **settings)


def length_baseline(train_pairs: list[dict], held_pairs: list[dict]) -> dict:
    """Prefer the longer (or shorter) answer; the direction that ranks more train pairs
    right is the baseline, scored on the held-out pairs (both directions reported)."""
    def longer_wins(pairs: list[dict]) -> float:
        return sum(len(p["chosen"]) > len(p["rejected"]) for p in pairs) / len(pairs)

    direction = "longer" if longer_wins(train_pairs) >= 0.5 else "shorter"
    held_longer = longer_wins(held_pairs)
    held = held_longer if direction == "longer" else \
        sum(len(p["chosen"]) < len(p["rejected"]) for p in held_pairs) / len(held_pairs)
    return {"direction": direction, "train_longer_wins": longer_wins(train_pairs),
            "held_accuracy": held, "held_longer_wins": held_longer,
            "held_ci95": wilson(round(held * len(held_pairs)), len(held_pairs))}


def reward_stage(work: Path, train_file: Path, held_file: Path, train_pairs: list[dict],
                 held_pairs: list[dict]) -> dict:
    result = run_or_resume(lambda **kw: parrot.reward_train(MODEL, train_file, **kw),
                           work / "rm", method="lora", rank=8, alpha=16.0, val_fraction=0.0,
                           lr=1e-3, min_lr=1e-4)
    held = parrot.reward_score(work / "rm", held_file)
    train = parrot.reward_score(work / "rm", train_file)
    correct = int((held.rewards[:, 0] > held.rewards[:, 1]).sum())
    return {"held_accuracy": held.accuracy, "held_ci95": wilson(correct, len(held_pairs)),
            "train_accuracy": train.accuracy, "held_pairs": len(held_pairs),
            "train_pairs": len(train_pairs), "steps": result.steps,
            "train_time_s": result.train_time_s,
            "length_baseline": length_baseline(train_pairs, held_pairs)}


def pair_intervals(work: Path, held_file: Path, held_pairs: list[dict], direction: str) -> dict:
    """Held-out accuracies with 95% intervals from a bootstrap over prompts (the pairs of
    one prompt share answers, so they are not independent draws)."""
    held = parrot.reward_score(work / "rm", held_file)
    groups: dict[str, dict[str, list[float]]] = {}
    for pair, (rc, rr) in zip(held_pairs, held.rewards.tolist(), strict=True):
        g = groups.setdefault(json.dumps(pair["prompt"]), {"rm": [], "length": []})
        g["rm"].append(float(rc > rr))
        longer = len(pair["chosen"]) > len(pair["rejected"])
        g["length"].append(float(longer if direction == "longer" else
                                 len(pair["chosen"]) < len(pair["rejected"])))
    return {k: summary([g[k] for g in groups.values()]) | {"prompts": len(groups)}
            for k in ("rm", "length")}


def dpo_stage(work: Path, train_file: Path) -> dict:
    result = run_or_resume(lambda **kw: parrot.dpo(MODEL, train_file, **kw), work / "dpo",
                           beta=0.1, method="lora", rank=8, alpha=16.0, val_fraction=0.1,
                           lr=5e-4, min_lr=5e-5)
    rows = [json.loads(line) for line in (work / "dpo" / "metrics.jsonl").read_text().splitlines()]
    last_val = [r for r in rows if "val_loss" in r][-1]
    return {"steps": result.steps, "train_time_s": result.train_time_s,
            "val_loss_before": result.metrics.get("val_loss_before"),
            "final_val": {k: v for k, v in last_val.items() if k.startswith("val_")}}


def after_samples(work: Path, held_items: list[dict]) -> list[list[str]]:
    llm = parrot.load(work / "dpo", quantize="none", max_batch=16, log=None)
    return sample(llm, held_items, 1_000_000)  # the seeds of the "before" answers


@torch.no_grad()
def kl_per_answer(work: Path, held_items: list[dict], answers: list[list[str]]) -> list[list[float]]:
    """sum over answer tokens of KL(π_t || π_ref,t), per answer of the tuned policy."""
    from parrot.chat import template_for
    from parrot.data.preference import collate_rows, encode_completion
    from parrot.training.logprobs import sequence_kl

    policy, tokenizer, _ = parrot.load_model(work / "dpo", log=None)
    reference, _, _ = parrot.load_model(MODEL, log=None)
    template = template_for(tokenizer)
    rows = [encode_completion(it["messages"], [{"role": "assistant", "content": a}],
                              tokenizer, template, 512) for it, group in zip(held_items, answers,
                                                                             strict=True)
            for a in group]
    values = []
    for i in range(0, len(rows), 8):
        tokens, mask, _ = collate_rows(rows[i:i + 8])
        values += sequence_kl(policy(tokens[:, :-1]), reference(tokens[:, :-1]), mask).tolist()
    return [values[i * K:(i + 1) * K] for i in range(len(held_items))]


def rewards_of(work: Path, held_items: list[dict], answers: list[list[str]]) -> list[list[float]]:
    from parrot.training.reward import load_reward_model, score_answers

    model, tokenizer, template, max_len = load_reward_model(work / "rm", home=parrot.api.home())
    items = [(it["messages"], a) for it, group in zip(held_items, answers, strict=True)
             for a in group]
    values = score_answers(model, tokenizer, template, items, max_len).tolist()
    return [values[i * K:(i + 1) * K] for i in range(len(held_items))]


@torch.no_grad()
def perplexities(work: Path, chars: int = 16_000) -> dict:
    """Perplexity of the base and the tuned model on held-out embedded-corpus text (the
    validation documents parrot train would hold out)."""
    from parrot.data.corpus import embedded_corpus
    from parrot.data.shards import split_texts
    from parrot.eval.perplexity import evaluate_text

    text = "\n\n".join(split_texts(embedded_corpus(), 0.1)[1])[:chars]
    out = {}
    for label, spec in (("before", MODEL), ("after", work / "dpo")):
        model, tokenizer, _ = parrot.load_model(spec, log=None)
        out[label] = evaluate_text(model, tokenizer, text, context=512).perplexity
    out["ratio"] = out["after"] / out["before"]
    out["chars"], out["source"] = len(text), "embedded corpus, validation documents"
    return out


def evaluation(work: Path, held_items: list[dict], before: list[list[str]],
               after: list[list[str]]) -> dict:
    judged = {label: [[float(judge(a, it["name"])) for a in group]
                      for it, group in zip(held_items, answers, strict=True)]
              for label, answers in (("before", before), ("after", after))}
    diff = [[a - b for a, b in zip(ga, gb, strict=True)]
            for ga, gb in zip(judged["after"], judged["before"], strict=True)]
    rewards = {label: rewards_of(work, held_items, answers)
               for label, answers in (("before", before), ("after", after))}
    kl = kl_per_answer(work, held_items, after)
    side = [{"prompt": held_items[i]["messages"][0]["content"], "before": before[i][0],
             "after": after[i][0]} for i in range(3)]  # the first three held-out prompts
    return {"judge": {k: summary(v) for k, v in judged.items()},
            "judge_difference": summary(diff),
            "reward": {k: summary(v) for k, v in rewards.items()},
            "kl": {"before": {"mean": 0.0, "note": "policy = reference"}, "after": summary(kl)},
            "perplexity": perplexities(work), "side_by_side": side,
            "mean_answer_chars": {k: statistics.mean(len(a) for g in v for a in g)
                                  for k, v in (("before", before), ("after", after))}}


def speed(train_file: Path, pairs: int = 4, rounds: int = 6) -> dict:
    """Seconds per optimizer step (LoRA, forward + backward + AdamW), interleaved rounds,
    the first dropped as warm-up: DPO on B pairs with cached reference log-probs, SFT on
    the same 2B rows, SFT on the B chosen rows."""
    from parrot.adapt.lora import apply_lora
    from parrot.chat import template_for
    from parrot.data.preference import collate_pairs, encode_preferences, load_preferences
    from parrot.data.sft import SFTBatch
    from parrot.training.logprobs import compute_reference
    from parrot.training.objectives_pref import DPOConfig, make_dpo_objective
    from parrot.training.objectives_sft import sft

    model, tokenizer, _ = parrot.load_model(MODEL, log=None)
    examples = encode_preferences(load_preferences(train_file)[:pairs], tokenizer,
                                  template_for(tokenizer), 512)
    ref = compute_reference(model, examples)
    apply_lora(model, "q,k,v,o", 8, 16.0)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    batch = collate_pairs(examples, ref)
    both = SFTBatch(batch.tokens, batch.mask)
    chosen = SFTBatch(batch.tokens[:pairs], batch.mask[:pairs])
    steps = {"dpo": (make_dpo_objective(DPOConfig()), batch), "sft_same_rows": (sft, both),
             "sft_chosen_only": (sft, chosen)}
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(rounds):
        for name, (objective, data) in steps.items():
            t0 = time.perf_counter()
            loss, _ = objective(model, data)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            times[name].append(time.perf_counter() - t0)
    tokens = int(batch.lengths.sum())
    med = {k: statistics.median(v[1:]) for k, v in times.items()}
    return {"pairs": pairs, "tokens_per_step": {"dpo": tokens, "sft_same_rows": tokens,
                                                "sft_chosen_only": int(batch.lengths[:pairs].sum())},
            "seconds_per_step": med, "all_seconds": times,
            "tokens_per_s": {"dpo": tokens / med["dpo"], "sft_same_rows": tokens / med["sft_same_rows"],
                             "sft_chosen_only": int(batch.lengths[:pairs].sum())
                             / med["sft_chosen_only"]},
            "dpo_over_sft_same_rows": med["dpo"] / med["sft_same_rows"],
            "dpo_over_sft_per_pair": med["dpo"] / med["sft_chosen_only"],
            "threads": torch.get_num_threads()}


# ---- pictures and report ------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/parrot-bench-preference"))
    parser.add_argument("--quick", action="store_true",
                        help="a few prompts and steps: checks the pipeline, results not kept")
    args = parser.parse_args()
    global N_TRAIN, N_HELD, RESULTS
    if args.quick:
        N_TRAIN, N_HELD, RESULTS = 12, 4, args.work / "results"
        TRAIN.update(steps=2, eval_every=2, checkpoint_every=2)
    torch.set_num_threads(1)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    train_items = prompts(TRAIN_NAMES, TRAIN_QUESTIONS, N_TRAIN, seed=0)
    held_items = prompts(HELD_NAMES, HELD_QUESTIONS, N_HELD, seed=1)
    samples = stage(work, "samples", lambda: base_samples(train_items, held_items))
    train_pairs = make_pairs(train_items, samples["train"])
    held_pairs = make_pairs(held_items, samples["held"])
    train_file = write_jsonl(work / "train_pairs.jsonl", train_pairs)
    held_file = write_jsonl(work / "held_pairs.jsonl", held_pairs)
    rm = stage(work, "reward", lambda: reward_stage(work, train_file, held_file, train_pairs,
                                                    held_pairs))
    dpo_result = stage(work, "dpo", lambda: dpo_stage(work, train_file))
    after = stage(work, "after", lambda: after_samples(work, held_items))
    ev = stage(work, "evaluation", lambda: evaluation(work, held_items, samples["held"], after))
    fast = stage(work, "speed", lambda: speed(train_file))
    rm["by_prompt"] = stage(work, "pair_intervals", lambda: pair_intervals(
        work, held_file, held_pairs, rm["length_baseline"]["direction"]))
    RESULTS.mkdir(exist_ok=True)
    judge_picture(ev, rm, RESULTS / "preference_results.png")
    for name in ("dpo", "rm"):
        picture = work / name / "preference.png"
        if picture.is_file():
            (RESULTS / f"preference_{name}_training.png").write_bytes(picture.read_bytes())
    setup = {"model": MODEL, "k_answers": K, "max_new_tokens": MAX_NEW,
             "temperature": TEMPERATURE, "top_p": TOP_P, "train_prompts": N_TRAIN,
             "held_prompts": N_HELD, "train": TRAIN, "threads": torch.get_num_threads(),
             "judge": "the answer contains the name the user gave, as a whole word",
             "base_rate_train": statistics.mean(judge(a, it["name"]) for it, g in
                                                zip(train_items, samples["train"], strict=True)
                                                for a in g)}
    report = {"setup": setup, "reward_model": rm, "dpo": dpo_result, "evaluation": ev,
              "speed": fast}
    (RESULTS / "preference.json").write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)


if __name__ == "__main__":
    main()
