"""Sentence embeddings: encode each text, run the model's hidden states, pool, normalize.

    texts → [CLS] pieces [SEP] (truncated to max_length) → padded batch + attention mask
          → hidden states (B, T, d) → mean over real tokens (or [CLS]) → L2 normalize

With `mean` pooling and normalization this reproduces sentence-transformers'
all-MiniLM-L6-v2 pipeline (Transformer → Pooling(mean) → Normalize).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from parrot.errors import ParrotError
from parrot.infer.encoder import frame_inputs, model_inputs, pad_batch
from parrot.model.pooling import POOLINGS, l2_normalize, pool


@torch.inference_mode()
def embed_texts(model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], *,
                max_length: int | None = None, pooling: str = "mean", normalize: bool = True,
                batch_size: int = 32) -> torch.Tensor:
    """One embedding per text: float32 (len(texts), d_model).

    max_length (tokens, [CLS]/[SEP] included) defaults to the model's context length.
    Texts are batched by length so that little padding is computed; the order of the
    result is the order of `texts`.
    """
    if isinstance(texts, str):
        texts = [texts]
    if not texts:
        raise ParrotError("Give at least one text to embed.")
    if pooling not in POOLINGS:
        raise ParrotError(f"Unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}.")
    limit = min(max_length or model.config.context_length, model.config.context_length)
    rows = [frame_inputs(tokenizer, text, limit) for text in texts]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
    pad_id = tokenizer.special_tokens.get("[PAD]", 0)
    out = torch.empty(len(rows), model.config.d_model)
    for start in range(0, len(order), batch_size):
        chosen = order[start:start + batch_size]
        tokens, types, mask = pad_batch([rows[i] for i in chosen], pad_id)
        inputs = model_inputs(model, tokens, types, mask)
        hidden = model.hidden(**inputs)                                # (B, T, d)
        pooled = pool(hidden.float(), inputs["attention_mask"], pooling)
        out[chosen] = (l2_normalize(pooled) if normalize else pooled).cpu()
    return out
