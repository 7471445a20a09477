"""Response bodies in the OpenAI shapes, built from engine outputs (pure functions).

Chat log-probabilities use the chat shape ({"content": [{"token", "logprob", "bytes",
"top_logprobs"}]}); text completions the legacy shape ({"tokens", "token_logprobs",
"top_logprobs", "text_offset"}), which lm-evaluation-harness reads for scoring.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from parrot.infer.logprobs import TokenLogprob


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def envelope(kind: str, rid: str, model: str, choices: list[dict], extra: dict | None = None
             ) -> dict[str, Any]:
    body = {"id": rid, "object": kind, "created": int(time.time()), "model": model,
            "system_fingerprint": None, "choices": choices}
    body.update(extra or {})
    return body


def chat_logprobs(scored: Sequence[TokenLogprob], tokenizer: Any) -> dict[str, Any]:
    """The chat shape: one entry per token with its top alternatives."""
    def entry(token_id: int, logprob: float) -> dict[str, Any]:
        return {"token": tokenizer.decode([token_id]), "logprob": logprob,
                "bytes": list(tokenizer.token_bytes(token_id))}

    return {"content": [
        {**entry(s.token_id, s.logprob), "top_logprobs": [entry(i, lp) for i, lp in s.top]}
        for s in scored
    ]}


def completion_logprobs(ids: Sequence[int], scored: Sequence[TokenLogprob | None],
                        tokenizer: Any) -> dict[str, Any]:
    """The legacy shape; a None score (an echoed prompt's first token) is reported as null."""
    text = lambda i: tokenizer.decode([i])  # noqa: E731
    tokens, values, tops, offsets, offset = [], [], [], [], 0
    for token_id, s in zip(ids, scored, strict=True):
        piece = text(token_id)
        tokens.append(piece)
        offsets.append(offset)
        offset += len(piece)
        values.append(None if s is None else s.logprob)
        tops.append(None if s is None else {text(i): lp for i, lp in s.top})
    return {"tokens": tokens, "token_logprobs": values, "top_logprobs": tops,
            "text_offset": offsets}
