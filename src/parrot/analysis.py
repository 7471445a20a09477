"""Looking inside models and cutting them down: the Python API of `parrot analyze heads`,
`parrot prune`, `parrot eval calibration` and `parrot eval report`.

    import parrot
    report = parrot.analyze_heads("runs/tiny", ablation=True)   # .importance (L, H)
    parrot.prune("runs/tiny", "runs/tiny-pruned", heads=0.5)   # a smaller run directory

Like `parrot.api`, every function takes a MODEL (any spec the one loader reads).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from parrot.api import load_model
from parrot.errors import ParrotError


def _windows(model: str | Path, data: Sequence[str | Path] | None, seq_len: int,
             windows: int, text_field: str) -> tuple[Any, Any, Any, torch.Tensor]:
    """(model, tokenizer, info, token windows (N, seq_len + 1)) for a head analysis."""
    from parrot.data.corpus import load_texts
    from parrot.eval.heads import head_shape, text_windows

    net, tokenizer, info = load_model(model)
    head_shape(net)  # a model without attention heads fails before reading the data
    length = min(seq_len, net.config.context_length)
    text = "\n".join(load_texts(data, text_field=text_field))
    return net, tokenizer, info, text_windows(tokenizer.encode(text), length, windows)


def analyze_heads(model: str | Path, data: Sequence[str | Path] | None = None, *,
                  seq_len: int = 128, windows: int = 8, ablation: bool = True,
                  text_field: str = "text", show_progress: bool = True) -> Any:
    """Each head's importance E|dL/dxi| and single-head ablation on `data` (default: the
    embedded corpus), as a `parrot.eval.heads.HeadReport`."""
    from parrot.eval.heads import analyze_heads as analyze
    from parrot.utils.progress import progress_bar

    net, _, _, ids = _windows(model, data, seq_len, windows, text_field)
    layers, heads = net.config.n_layers, net.config.n_heads
    with progress_bar("head ablation", layers * heads, show_progress and ablation) as bar:
        return analyze(net, ids, ablation, lambda done, _: bar.update(0, completed=done))


def prune(model: str | Path, out: str | Path, *, heads: float = 0.3,
          data: Sequence[str | Path] | None = None, unit: str = "auto",
          order: str = "importance", seed: int = 0, seq_len: int = 128, windows: int = 8,
          text_field: str = "text") -> Path:
    """Remove the `heads` fraction of attention heads least important on `data` (or in a
    random order, `order="random"`) and write the smaller model as a run directory."""
    from parrot.adapt.prune import check_fraction, heads_to_keep, prune_heads, random_importance
    from parrot.eval.heads import head_importance
    from parrot.rundir import save_weights, write_config

    check_fraction(heads)
    if order not in ("importance", "random"):
        raise ParrotError(f"order must be 'importance' or 'random', got {order!r}.")
    out = Path(out)
    if (out / "config.json").exists():
        raise ParrotError(f"{out} already holds a model; choose another --out.")
    net, tokenizer, _, ids = _windows(model, data, seq_len, windows, text_field)
    scores = head_importance(net, ids)[0] if order == "importance" else \
        random_importance(net.config, seed)
    keep = heads_to_keep(net.config, scores, heads, unit)
    pruned = prune_heads(net, keep)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save(out)
    save_weights(out, pruned)
    write_config(out, {"model": pruned.config.to_dict(), "pruned": {
        "from": str(model), "fraction": heads, "unit": unit, "order": order, "seed": seed,
        "kept_heads": keep, "heads_before": net.config.n_heads}})
    return out


def model_path(model: str | Path, info: Any) -> Path:
    """Where files that travel with MODEL go: the path given, else where it is stored."""
    return Path(model) if Path(model).exists() else Path(info.path)


def calibration_predictions(net: Any, tokenizer: Any, data: Sequence[str | Path] | None,
                            max_tokens: int, seq_len: int, text_field: str
                            ) -> tuple[str, torch.Tensor, torch.Tensor]:
    """(kind, logits or choice scores (N, C), labels (N,)) for a text or a choice task."""
    from parrot.data.corpus import load_texts
    from parrot.eval.predictions import (
        choice_scores,
        is_choice_task,
        load_choice_task,
        token_predictions,
    )

    context = net.config.context_length
    bos = tokenizer.bos_id if getattr(tokenizer, "add_bos", False) else None
    if data is not None and len(data) == 1 and is_choice_task(data[0]):
        items = load_choice_task(data[0])
        return ("multiple_choice", *choice_scores(net, tokenizer.encode, items, context, bos))
    ids = ([] if bos is None else [bos]) + \
        tokenizer.encode("\n".join(load_texts(data, text_field=text_field)))
    return ("next_token", *token_predictions(net, ids, min(seq_len, context), 2 * max_tokens))


def calibrate(model: str | Path, data: Sequence[str | Path] | None = None, *,
              fit: bool = False, n_bins: int = 15, max_tokens: int = 2048, seq_len: int = 256,
              text_field: str = "text", save: bool = True) -> dict[str, Any]:
    """ECE (equal-width and equal-mass bins), NLL and accuracy of MODEL's probabilities on
    the second half of `data` (the held-out split); with `fit`, T is fitted on the first
    half by L-BFGS, the second half is measured again at T, and (with `save`) T is saved
    beside the model, where `parrot.load` finds it for `calibrated=True` sampling.

    `data`: text files (next-token predictions, up to max_tokens per split) or one JSONL
    multiple-choice task {"context", "choices", "answer"} (choices scored by
    log-likelihood). Returns a JSON-ready dict; result["bins"] holds the diagrams' bins.
    """
    from dataclasses import asdict

    from parrot.eval.calibration import fit_temperature, measure, reliability, save_temperature
    from parrot.eval.predictions import split_halves

    net, tokenizer, info = load_model(model)
    kind, logits, labels = calibration_predictions(net, tokenizer, data, max_tokens, seq_len,
                                                   text_field)
    val, test = split_halves(len(labels))

    def summary(temperature: float) -> tuple[dict, dict]:
        result, confidence, correct = measure(logits[test], labels[test], temperature, n_bins)
        bins = {scheme: [asdict(b) for b in reliability(confidence, correct, n_bins, scheme)]
                for scheme in ("width", "mass")}
        return asdict(result), bins

    before, before_bins = summary(1.0)
    record: dict[str, Any] = {"model": str(model), "kind": kind, "before": before,
                              "validation_predictions": val.stop - val.start,
                              "bins": {"before": before_bins}}
    if fit:
        temperature = fit_temperature(logits[val], labels[val])
        record["after"], record["bins"]["after"] = summary(temperature)
        record["temperature"] = temperature
        if save:
            saved = save_temperature(model_path(model, info), temperature, {
                "kind": kind, "data": [str(d) for d in data or ["embedded corpus"]],
                "test_ece_width_before": before["ece_width"],
                "test_ece_width_after": record["after"]["ece_width"]})
            record["saved"] = str(saved)
    return record


def _held_out_text(text: Sequence[str | Path] | None, folder: Path, max_chars: int) -> Path:
    """A file of held-out text: the given files, else the embedded corpus's validation
    documents (the last 10%, which `parrot train` does not train on)."""
    from parrot.data.corpus import embedded_corpus, load_texts
    from parrot.data.shards import split_documents

    docs = load_texts(text) if text else split_documents(embedded_corpus(), 0.1)[1]
    path = folder / "held_out.txt"
    path.write_text("\n".join(docs)[:max_chars], encoding="utf-8")
    return path


def _model_card(model: str | Path, text_file: Path, tasks: dict[str, Path], folder: Path,
                limit: int, max_tokens: int) -> dict[str, Any]:
    from parrot.eval.calibration import MIN_FIT

    try:
        from parrot.eval.harness import ParrotLM, run_tasks
    except ImportError as err:
        raise ParrotError(f"parrot eval report runs lm-evaluation-harness in-process ({err.name} "
                          "is missing); install it with pip install 'lm-eval[api]==0.4.13'.") \
            from None
    from parrot.eval.perplexity import evaluate_text

    net, tokenizer, _ = load_model(model)
    context = net.config.context_length
    ppl = evaluate_text(net, tokenizer, text_file.read_text(encoding="utf-8"), context,
                        max(1, context // 2))
    first_task = next(iter(tasks.values()))
    card = {"model": str(model), "parameters": net.num_parameters(),
            "perplexity": {"perplexity": ppl.perplexity, "bits_per_byte": ppl.bits_per_byte,
                           "nll": ppl.nll, "tokens": ppl.tokens},
            "calibration_next_token": calibrate(model, [text_file], fit=True, save=False,
                                                max_tokens=max_tokens),
            # too few questions to fit T (MIN_FIT per half): measured at T = 1 only
            "calibration_choices": calibrate(model, [first_task], save=False, fit=len(
                first_task.read_text(encoding="utf-8").splitlines()) >= 2 * MIN_FIT)}
    import parrot.api

    llm = parrot.api.load(model, quantize="none", max_batch=1, log=None)
    card["tasks"] = run_tasks(ParrotLM(net, tokenizer, llm.engine), tasks, folder, limit)
    return card


def report_card(models: Sequence[str | Path], out: str | Path, *,
                text: Sequence[str | Path] | None = None, tasks: Sequence[str | Path] = (),
                limit: int = 200, max_tokens: int = 2048, max_chars: int = 40000) -> Path:
    """One HTML page for one model or two side by side (viz/report_card.py): perplexity
    and bits per byte on held-out text, calibration of next-token and multiple-choice
    predictions, and local JSONL tasks run by lm-evaluation-harness in-process (default:
    a continuation task generated from held-out documents with seed 0)."""
    import tempfile

    from parrot.eval.predictions import is_choice_task
    from parrot.eval.tasks import continuation_task, write_jsonl
    from parrot.utils.atomic import atomic_write_text
    from parrot.viz.report_card import render

    if not 1 <= len(models) <= 2:
        raise ParrotError(f"A report card shows one or two models, got {len(models)}.")
    for task in tasks:
        if not is_choice_task(task):
            raise ParrotError(f"{task} is not a multiple-choice JSONL task (one "
                              "{\"context\", \"choices\", \"answer\"} object per line).")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        text_file = _held_out_text(text, folder, max_chars)
        named = {f"parrot_{Path(t).stem}".replace("-", "_"): Path(t).resolve() for t in tasks}
        described = {name: str(path) for name, path in named.items()}
        if not named:
            from parrot.data.corpus import embedded_corpus
            from parrot.data.shards import split_documents

            docs = split_documents(embedded_corpus(), 0.1)[1]
            named["parrot_continuation"] = write_jsonl(folder / "continuation.jsonl",
                                                       continuation_task(docs, limit, seed=0))
            described["parrot_continuation"] = (f"{limit} generated items: which of 4 six-word "
                                                "spans continues a held-out passage (seed 0)")
        cards = [_model_card(m, text_file, named, folder, limit, max_tokens) for m in models]
    page = render({"models": cards, "text": ", ".join(map(str, text)) if text else
                   f"the embedded corpus's validation documents (first {max_chars} characters)",
                   "tasks": described})
    out = Path(out)
    atomic_write_text(out, page)
    atomic_write_text(out.with_suffix(".json"), json.dumps(
        {"models": cards, "tasks": described}, indent=1, default=str) + "\n")
    return out
