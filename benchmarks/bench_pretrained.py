"""SmolLM2-135M-Instruct on CPU: parrot (fp32, int8, int4 weights) vs transformers generate.

Every variant runs in its own child process (so peak memory is its own), in interleaved
rounds, on the same GGUF file and the same prompt:

  parrot-fp32         the dequantized model through parrot's Engine (KV cache, greedy)
  parrot-int8         the same with Linear layers swapped for int8 weight-only kernels
  parrot-int4         int4 (groups of 32) layers, int8 output head
  parrot-int8-compile parrot-int8 with the engine's torch.compile'd decode step
  parrot-int4-compile parrot-int4 likewise
  hf-fp32             transformers loading the same GGUF (dequantized to fp32), generate()

Measured: prefill tokens/s (a ~500-token prompt), time to first token, decode tokens/s
(greedy, a fixed number of new tokens, EOS ignored) and the child's peak RSS. Each child
first runs the same request once untimed (warm-up; for compiled variants this is where
compilation happens, its time is reported as warmup_s). With --accuracy each child also
continues llama.cpp's reference prompts greedily; the table then shows the common-prefix
lengths with llama.cpp's continuations and with parrot-fp32's.
Writes benchmarks/results/pretrained.json and prints a table with ratios of medians.

    .venv/bin/python benchmarks/bench_pretrained.py [--threads 2] [--rounds 1] [--model PATH]
        [--variants parrot-int8 hf-fp32 ...] [--accuracy]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

RESULTS = Path(__file__).resolve().parent / "results" / "pretrained.json"
VARIANTS = ("parrot-fp32", "parrot-int8", "parrot-int4", "parrot-int8-compile",
            "parrot-int4-compile", "hf-fp32")
REFERENCES = (Path(__file__).resolve().parents[2] / "shared" / "data" / "references"
              / "smollm2-135m-instruct-q4_1.json")
PROMPT_WORDS = ("The history of the city begins with a small settlement by the river, where "
                "traders met to exchange grain, salt and wool. ")


def prompt_ids(tokenizer, length: int) -> list[int]:
    ids = tokenizer.encode(PROMPT_WORDS * (length // 10 + 1))
    return ids[:length]


def run_parrot(path: str, variant: str, prompt_len: int, new_tokens: int,
               accuracy: bool) -> dict:
    import torch

    from parrot.adapt.prepare import prepare_for_inference
    from parrot.hub.gguf_model import load_gguf
    from parrot.infer import Engine, SamplingParams
    from parrot.kernels import settings_from

    model, tokenizer, _ = load_gguf(path)
    model.requires_grad_(False)
    # What `--quantize` gives a user: fused projections, then int8 / int4 layers (or none).
    prepare_for_inference(model, variant.split("-")[1].replace("fp32", "none"),
                          **settings_from(os.environ))
    ids = prompt_ids(tokenizer, prompt_len)
    engine = Engine(model, tokenizer, max_batch=1, max_len=prompt_len + new_tokens + 8,
                    eos_ids=[], compile=variant.endswith("-compile"))
    params = SamplingParams(temperature=0, max_new_tokens=new_tokens, ignore_eos=True)
    start = time.perf_counter()
    engine.generate(ids, params)  # warm-up over the same shapes (compiles, if asked)
    warmup = time.perf_counter() - start
    # A different first token defeats the engine's prefix reuse, so prefill is measured.
    ids = [ids[1]] + ids[1:]
    with torch.inference_mode():
        start = time.perf_counter()
        request = engine.submit(ids, params, collect=True)
        engine.step()  # admission = prefill + first token
        ttft = time.perf_counter() - start
        while engine.has_work():
            engine.step()
        total = time.perf_counter() - start
    completion = engine.result(request)
    result = {"prefill_tok_s": len(ids) / ttft, "ttft_s": ttft,
              "decode_tok_s": (len(completion.token_ids) - 1) / (total - ttft),
              "warmup_s": warmup, "text": tokenizer.decode(completion.token_ids[:16])}
    if accuracy:
        result["greedy"] = [engine.generate(case["prompt_ids"], params.replace(
            max_new_tokens=len(case["greedy_ids"]))).token_ids for case in reference_cases()]
    return result


def reference_cases() -> list[dict]:
    """llama.cpp's greedy continuations of SmolLM2 (see shared/data/references/README)."""
    return json.loads(REFERENCES.read_text(encoding="utf-8"))["greedy"]


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def run_hf(path: str, prompt_len: int, new_tokens: int, accuracy: bool) -> dict:
    import torch
    import transformers

    from parrot.hub.gguf_model import load_gguf

    _, tokenizer, _ = load_gguf(path)  # the same ids for both sides
    p = Path(path)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        p.parent, gguf_file=p.name, dtype=torch.float32).eval()
    ids = torch.tensor([prompt_ids(tokenizer, prompt_len)])
    gen = {"do_sample": False, "pad_token_id": 0, "eos_token_id": None}
    with torch.inference_mode():
        model.generate(ids[:, :32], max_new_tokens=2, min_new_tokens=2, **gen)
        start = time.perf_counter()
        model.generate(ids, max_new_tokens=1, min_new_tokens=1, **gen)
        ttft = time.perf_counter() - start
        start = time.perf_counter()
        out = model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **gen)
        total = time.perf_counter() - start
        new = out[0, ids.shape[1]:].tolist()
        result = {"prefill_tok_s": ids.shape[1] / ttft, "ttft_s": ttft,
                  "decode_tok_s": (len(new) - 1) / max(total - ttft, 1e-9),
                  "warmup_s": 0.0, "text": tokenizer.decode(new[:16])}
        if accuracy:
            result["greedy"] = []
            for case in reference_cases():
                n = len(case["greedy_ids"])
                prompt = torch.tensor([case["prompt_ids"]])
                out = model.generate(prompt, max_new_tokens=n, min_new_tokens=n, **gen)
                result["greedy"].append(out[0, prompt.shape[1]:].tolist())
    return result


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    if args.worker.startswith("parrot-"):
        result = run_parrot(args.model, args.worker, args.prompt_len, args.new_tokens,
                            args.accuracy)
    else:
        result = run_hf(args.model, args.prompt_len, args.new_tokens, args.accuracy)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def child(args: argparse.Namespace, variant: str) -> dict:
    command = [sys.executable, __file__, "--worker", variant, "--model", args.model,
               "--threads", str(args.threads), "--prompt-len", str(args.prompt_len),
               "--new-tokens", str(args.new_tokens)] + (["--accuracy"] if args.accuracy else [])
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise SystemExit(f"{variant} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="GGUF file (default: pull SmolLM2)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--prompt-len", type=int, default=500)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument("--accuracy", action="store_true",
                        help="also compare greedy continuations with llama.cpp's references")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if args.model is None:
        from parrot.hub.pull import ensure_pulled

        args.model = str(ensure_pulled("smollm2-135m-instruct", log=print))
    runs: dict[str, list[dict]] = {v: [] for v in args.variants}
    args.load_before = os.getloadavg()
    for _ in range(args.rounds):
        for variant in args.variants:
            runs[variant].append(child(args, variant))
            print(variant, runs[variant][-1], flush=True)
    report(args, runs)


def report(args: argparse.Namespace, runs: dict[str, list[dict]]) -> None:
    keys = ("prefill_tok_s", "ttft_s", "decode_tok_s", "peak_rss_mb", "warmup_s")
    medians = {v: {k: statistics.median(r[k] for r in rs) for k in keys} for v, rs in runs.items()}
    base = medians.get("hf-fp32")
    load = (args.load_before, os.getloadavg())
    print(f"\nSmolLM2-135M, {args.threads} threads, prompt {args.prompt_len}, "
          f"{args.new_tokens} new tokens (medians of {args.rounds}); load average "
          f"{load[0][0]:.1f} before, {load[1][0]:.1f} after")
    print(f"{'variant':20s} {'prefill tok/s':>14s} {'TTFT s':>8s} {'decode tok/s':>13s} "
          f"{'peak MB':>8s} {'warmup s':>9s} {'decode vs hf':>13s} {'prefill vs hf':>14s}")
    for variant, m in medians.items():
        ratio = (f"{m['decode_tok_s'] / base['decode_tok_s']:.2f}x" if base else "-")
        pre = (f"{m['prefill_tok_s'] / base['prefill_tok_s']:.2f}x" if base else "-")
        print(f"{variant:20s} {m['prefill_tok_s']:14.1f} {m['ttft_s']:8.3f} "
              f"{m['decode_tok_s']:13.1f} {m['peak_rss_mb']:8.0f} {m['warmup_s']:9.1f} "
              f"{ratio:>13s} {pre:>14s}")
    agreement = accuracy_table(runs) if args.accuracy else None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"threads": args.threads, "rounds": args.rounds,
                                   "prompt_len": args.prompt_len,
                                   "new_tokens": args.new_tokens, "load_average": load,
                                   "medians": medians, "greedy_common_prefix": agreement,
                                   "runs": runs}, indent=2) + "\n")
    print(f"wrote {args.out}")


def accuracy_table(runs: dict[str, list[dict]]) -> dict:
    """Per variant, per reference prompt: common-prefix lengths of its greedy continuation
    with llama.cpp's and with parrot-fp32's (when that ran)."""
    cases = reference_cases()
    fp32 = runs.get("parrot-fp32", [{}])[0].get("greedy")
    table = {}
    print("\ngreedy common prefix (tokens) with llama.cpp / with parrot-fp32, per prompt:")
    for variant, rs in runs.items():
        ours = rs[0]["greedy"]
        versus_fp32 = None if fp32 is None else [
            common_prefix(o, f) for o, f in zip(ours, fp32, strict=True)]
        table[variant] = {
            "llama_cpp": [common_prefix(o, c["greedy_ids"])
                          for o, c in zip(ours, cases, strict=True)],
            "parrot_fp32": versus_fp32,
            "length": [len(c["greedy_ids"]) for c in cases]}
        print(f"{variant:20s} {table[variant]['llama_cpp']} / {table[variant]['parrot_fp32']}"
              f" of {table[variant]['length']}")
    return table


if __name__ == "__main__":
    main()
