"""Named training recipes: functions returning (ModelConfig, TrainConfig, DataSpec).

`shakespeare-baseline` is the classic small CPU recipe for character-level tinyshakespeare;
`shakespeare-best` is our fastest recipe to the same validation loss; `tiny` trains a small
model on the embedded corpus in about a minute.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from parrot.errors import ParrotError
from parrot.model import ModelConfig, get_preset
from parrot.training.config import DataSpec, TrainConfig, override

Recipe = tuple[ModelConfig, TrainConfig, DataSpec]
SHAKESPEARE_DATA = DataSpec(tokenizer="bytes", split="chars", val_fraction=0.1, needs_path=True)


def shakespeare_baseline() -> Recipe:
    """4 layers x 4 heads, width 128, context 64, batch 12, learned positions, LayerNorm,
    GELU, tied head; AdamW lr 1e-3, warmup 100, cosine to 1e-4 over 2000 steps, beta2 0.99."""
    model = ModelConfig(
        vocab_size=256, context_length=64, d_model=128, n_layers=4, n_heads=4,
        positions="learned", norm="layernorm", mlp="gelu", bias=False, dropout=0.0,
        tie_embeddings=True,
    )
    train = TrainConfig(
        steps=2000, batch_size=12, lr=1e-3, min_lr=1e-4, warmup=100, weight_decay=0.1,
        beta1=0.9, beta2=0.99, grad_clip=1.0, eval_every=50, eval_iters=20,
    )
    return model, train, SHAKESPEARE_DATA


def shakespeare_best() -> Recipe:
    """The baseline's size with RoPE, RMSNorm and SwiGLU, a 6x higher learning rate and a
    batch of 32: 320 larger steps (655k tokens, 0.43x the baseline's) with better throughput
    per token. benchmarks/bench_shakespeare.py --ablation measures each change."""
    model, train, data = shakespeare_baseline()
    model = model.replace(positions="rope", norm="rmsnorm", mlp="swiglu")
    train = train.replace(steps=320, batch_size=32, lr=6e-3, min_lr=6e-4, warmup=40,
                          eval_every=20)
    return model, train, data


def tiny() -> Recipe:
    """A small BPE model on the embedded corpus (vocab_size follows the trained tokenizer)."""
    model = ModelConfig(
        vocab_size=512, context_length=64, d_model=96, n_layers=2, n_heads=4,
        positions="rope", norm="rmsnorm", mlp="swiglu", bias=False, tie_embeddings=True,
    )
    train = TrainConfig(
        steps=300, batch_size=16, lr=3e-3, min_lr=3e-4, warmup=30, eval_every=50,
        eval_iters=10, checkpoint_every=100,
    )
    return model, train, DataSpec(tokenizer="bpe", vocab_size=512, split="documents")


def moe_tiny() -> Recipe:
    """The `moe-tiny` preset (8 experts, top-2, loss-free balancing) on the embedded corpus
    with `tiny`'s BPE data and schedule."""
    _, train, data = tiny()
    return get_preset("moe-tiny"), train, data


def bert_tiny() -> Recipe:
    """A small BERT trained by masked language modelling on the embedded corpus: a BPE
    tokenizer with [MASK]/[CLS]/[SEP]/[PAD] (added by the runner), the `bert-tiny` model."""
    train = TrainConfig(
        steps=400, batch_size=32, lr=2e-3, min_lr=2e-4, warmup=40, eval_every=50,
        eval_iters=10, checkpoint_every=200, objective="mlm",
    )
    return get_preset("bert-tiny"), train, DataSpec(tokenizer="bpe", vocab_size=1024,
                                                    split="documents")


def seq2seq_tiny() -> Recipe:
    """The `seq2seq-tiny` encoder-decoder (3 + 3 layers, width 128). `parrot train` pretrains
    it by BART-style denoising on the corpus; `parrot seq2seq train` trains it on pairs with
    the same optimiser settings (batch 64 pairs, lr 1e-3 cosine to 1e-4)."""
    train = TrainConfig(
        steps=1500, batch_size=64, lr=1e-3, min_lr=1e-4, warmup=100, weight_decay=0.01,
        eval_every=250, eval_iters=10, checkpoint_every=500, log_every=25,
        objective="denoise",
    )
    return get_preset("seq2seq-tiny"), train, DataSpec(tokenizer="bpe", vocab_size=512,
                                                       split="documents")


RECIPES: dict[str, Callable[[], Recipe]] = {
    "shakespeare-baseline": shakespeare_baseline,
    "shakespeare-best": shakespeare_best,
    "tiny": tiny,
    "bert-tiny": bert_tiny,
    "moe-tiny": moe_tiny,
    "seq2seq-tiny": seq2seq_tiny,
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ParrotError(f"Unknown preset {name!r}; choose one of: {', '.join(RECIPES)}.")
    return RECIPES[name]()


def apply_overrides(recipe: Recipe, overrides: Sequence[str]) -> Recipe:
    """Apply `section.field=value` (or unambiguous `field=value`) strings to a recipe."""
    parts = override(dict(zip(("model", "train", "data"), recipe, strict=True)), overrides)
    return parts["model"], parts["train"], parts["data"]
