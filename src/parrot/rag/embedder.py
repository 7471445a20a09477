"""The embedding model a store is built with: texts → unit vectors, and token counts.

Any encoder MODEL parrot loads works (`minilm-l6` by default, equal to sentence-transformers'
all-MiniLM-L6-v2): it is resolved through the one loader (`hub/resolve.py`) and run by
`infer/embed.py`. The store records the embedder's `name` and `dim` and refuses another.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from parrot.errors import ParrotError

DEFAULT_EMBED_MODEL = "minilm-l6"


class Embedder:
    """An encoder with its tokenizer: `embed(texts)` → float32 (n, dim), L2-normalized;
    `count_tokens(texts)` → pieces per text without [CLS]/[SEP] (what chunking packs)."""

    def __init__(self, model: Any, tokenizer: Any, name: str, *, max_length: int | None = None,
                 pooling: str = "mean", batch_size: int = 32) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.dim = int(model.config.d_model)
        self.max_length = int(max_length or model.config.context_length)
        self.pooling = pooling
        self.batch_size = batch_size

    @classmethod
    def load(cls, spec: str | Path = DEFAULT_EMBED_MODEL, *, home: str | Path | None = None,
             pull: bool = True, log: Callable[[str], None] | None = None) -> Embedder:
        """The encoder MODEL `spec` (a pulled name, a folder) ready to embed."""
        from parrot.hub.resolve import resolve_model
        from parrot.infer.encoder import is_encoder_only

        model, tokenizer, info = resolve_model(spec, home=home, pull_missing=pull, log=log)
        if not is_encoder_only(model.config):
            raise ParrotError(f"{spec} is a decoder; give an encoder (sentence-embedding) model "
                              f"such as {DEFAULT_EMBED_MODEL} to --embed-model.")
        extra = getattr(info, "extra", {}) or {}
        return cls(model, tokenizer, info.name, max_length=extra.get("max_seq_length"),
                   pooling=extra.get("pooling", "mean"))

    @property
    def max_tokens(self) -> int:
        """The longest passage embedded whole: the model's limit less [CLS] and [SEP]."""
        return self.max_length - 2

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        from parrot.infer.embed import embed_texts

        vectors = embed_texts(self.model, self.tokenizer, list(texts), max_length=self.max_length,
                              pooling=self.pooling, batch_size=self.batch_size)
        return vectors.numpy().astype(np.float32, copy=False)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(self.tokenizer.encode(t)) for t in texts]
