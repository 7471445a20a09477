"""Lessons that train and compare models end to end: `parrot lesson rnn`.

    import parrot.lessons
    parrot.lessons.rnn_lesson("runs/rnn-lesson", steps=1500)

The RNN lesson (spec 003, "a little history"): a GRU encoder-decoder with a fixed
context vector, the same with Bahdanau's additive attention, and parrot's transformer
encoder-decoder of about the same parameter count, trained by the one training loop on the
same seeded toy translation task (training/rnn_lesson.py), then scored on held-out pairs
by source length. Writes DIR/lesson.json, DIR/accuracy_by_length.png and
DIR/alignment.png; each model's run directory is DIR/<model>. A killed lesson resumes:
finished models are kept, an interrupted one continues from its checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from parrot.errors import ParrotError

EDGES = (5, 15, 25, 35, 45, 55, 65, 75, 81)


def _state(run: Path) -> str:
    """"done" (trained to the end), "partial" (has a checkpoint) or "new"."""
    from parrot.rundir import read_metrics

    if any("val_exact_match" in row for row in read_metrics(run)):
        return "done"
    return "partial" if (run / "config.json").is_file() else "new"


MODELS = ("gru-fixed", "gru-attention", "transformer")


def _train_one(out: Path, name: str, train_file: Path, steps: int, batch_size: int,
               seed: int, d_hidden: int, show_progress: bool) -> None:
    """Train (or resume, or keep) model `name` of the lesson into out/name."""
    from parrot.api import seq2seq_train
    from parrot.model.rnn import RNNConfig
    from parrot.training.config import TrainConfig
    from parrot.training.rnn_lesson import train_gru

    state = _state(out / name)
    if state == "done":
        return
    train = TrainConfig(steps=steps, batch_size=batch_size, lr=3e-3, min_lr=3e-4,
                        warmup=min(100, steps // 10), weight_decay=0.0,
                        eval_every=max(1, steps // 5), eval_iters=5,
                        checkpoint_every=max(1, steps // 10), log_every=25, seed=seed)
    if name != "transformer":
        # Additive scores are a (B, T, S, d_attn) tensor: a narrow d_attn keeps it cheap.
        cfg = RNNConfig(vocab_size=1, d_embed=64, d_hidden=d_hidden, d_attn=32,
                        attention=name == "gru-attention")
        train_gru(out / name, train_file, cfg, train, resume=state == "partial",
                  show_progress=show_progress)
        return
    # About the GRUs' parameter count: width 96, 2 encoder + 2 decoder layers.
    sets = {"data.tokenizer": "bytes", "model.d_model": 96, "model.n_layers": 2,
            "model.encoder_layers": 2, "model.n_heads": 4, "model.context_length": 96,
            **{f"train.{k}": v for k, v in train.to_dict().items()
               if k not in ("objective", "threads", "device") and v is not None}}
    overrides = [] if state == "partial" else \
        [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in sets.items()]
    seq2seq_train(train_file, out / name, overrides=overrides, resume=state == "partial",
                  show_progress=show_progress)


def _outputs(out: Path, sources: list[str]) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Each model's greedy outputs on `sources`, and the attention GRU's weights."""
    import torch

    from parrot.data.pairs import Seq2SeqTokens
    from parrot.rundir import load_model, read_config
    from parrot.training.rnn_lesson import gru_generate
    from parrot.training.seq2seq import generate_targets, load_seq2seq

    outputs, extra = {}, {}
    for name in ("gru-fixed", "gru-attention"):
        model, tokenizer, _ = load_model(out / name)
        tokens = Seq2SeqTokens(**read_config(out / name)["seq2seq"])
        capture: list[torch.Tensor] = []
        outputs[name] = gru_generate(model, tokenizer, tokens, sources, capture=capture)
        extra[name] = {"parameters": model.num_parameters(), "capture": capture}
    model, tokenizer, tokens = load_seq2seq(out / "transformer")
    outputs["transformer"] = generate_targets(model, tokenizer, tokens, sources)
    extra["transformer"] = {"parameters": model.num_parameters()}
    return outputs, extra


def rnn_lesson(out: str | Path, *, steps: int = 1500, pairs: int = 6000, test_pairs: int = 800,
               batch_size: int = 32, d_hidden: int = 128, seed: int = 0,
               only: str | None = None, show_progress: bool = True) -> dict[str, Any] | None:
    """Train the three models (module docstring) and score them; returns lesson.json.

    only: train just this model and return None (several processes can then train the
    three at once; a last call without `only` finds them done and scores them)."""
    from parrot.data.pairs import load_pairs
    from parrot.eval.tasks import write_jsonl
    from parrot.training.rnn_lesson import by_length, token_accuracy, toy_pairs
    from parrot.utils.atomic import atomic_write_json
    from parrot.viz.figure import save_png
    from parrot.viz.lesson import accuracy_figure, alignment_figure

    if steps < 1 or pairs < 20 or test_pairs < 1:
        raise ParrotError("The lesson needs steps >= 1, pairs >= 20 and test_pairs >= 1.")
    if only is not None and only not in MODELS:
        raise ParrotError(f"--only must be one of {', '.join(MODELS)}, got {only!r}.")
    out = Path(out)
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    train_file, test_file = data / "train.jsonl", data / "test.jsonl"
    if not train_file.is_file():  # the same seed writes the same files
        write_jsonl(train_file, toy_pairs(pairs, seed))
        write_jsonl(test_file, toy_pairs(test_pairs, seed + 1))
    for name in MODELS if only is None else (only,):
        _train_one(out, name, train_file, steps, batch_size, seed, d_hidden, show_progress)
    if only is not None:
        return None
    test = load_pairs(test_file)
    outputs, extra = _outputs(out, [p.source for p in test])
    results = {name: {"parameters": extra[name]["parameters"],
                      "exact_match": sum(o == p.target for o, p in zip(outs, test, strict=True))
                      / len(test),
                      "token_accuracy": sum(token_accuracy(o, p.target)
                                            for o, p in zip(outs, test, strict=True)) / len(test),
                      "by_length": by_length(test, outs, EDGES)}
               for name, outs in outputs.items()}
    save_png(accuracy_figure(results), out / "accuracy_by_length.png", dpi=120)
    example = max(range(len(test)), key=lambda i: (len(test[i].source) <= 30,
                                                    len(test[i].source)))
    batch, row = divmod(example, 64)
    alpha = extra["gru-attention"]["capture"][batch][row]
    produced = outputs["gru-attention"][example]
    weights = alpha[: len(produced), : len(test[example].source)].numpy()
    save_png(alignment_figure(weights, test[example].source, produced,
                              f"additive attention, source {test[example].source!r}"),
             out / "alignment.png", dpi=140)
    record = {"steps": steps, "pairs": pairs, "test_pairs": len(test), "seed": seed,
              "models": results, "alignment_example": {"source": test[example].source,
                                                       "target": test[example].target,
                                                       "output": produced}}
    atomic_write_json(out / "lesson.json", record)
    return record
