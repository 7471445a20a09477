"""The records the engine keeps and returns: one per request, one per step, the statistics.

Kept apart from the engine so the server (#6) and the CLI can read them without the loop.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from parrot.infer.logprobs import TokenLogprob
from parrot.infer.sampling import SamplingParams
from parrot.infer.stopping import StopChecker


@dataclass(frozen=True)
class RequestStats:
    """Timing of one request. Time to first token runs from submission to the first token.

    prefill_tokens counts the prompt tokens actually computed (cached_tokens were reused from
    the slot's previous conversation); decode tokens/s covers the tokens after the first.
    """

    prompt_tokens: int
    cached_tokens: int
    generated_tokens: int
    time_to_first_token_s: float
    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    total_s: float
    image_encode_s: float = 0.0  # of the time to first token: the pictures' encoder

    @property
    def prefill_tokens(self) -> int:
        return self.prompt_tokens - self.cached_tokens

    def to_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)


@dataclass
class Completion:
    """A finished request: its tokens, its visible text and why it stopped.

    `logits` (generated_tokens, V) holds the raw logits each token was chosen from, when
    the request was submitted with `record_logits=True` (for tests and log-probabilities).
    """

    request_id: int
    prompt_ids: list[int]
    token_ids: list[int]
    text: str
    finish_reason: str
    stop_reason: int | str | None
    stats: RequestStats
    logits: torch.Tensor | None = None


@dataclass(frozen=True)
class StepOutput:
    """One token produced for one request during `Engine.step`.

    `text` is the visible text this token released (possibly empty: held back or an
    unfinished character); `completion` is set on the request's last token; `logprobs`
    when the request asked for them.
    """

    request_id: int
    token_id: int
    text: str
    completion: Completion | None = None
    logprobs: TokenLogprob | None = None


@dataclass
class Request:
    """A request's mutable state while queued or decoding (engine-internal)."""

    request_id: int
    prompt: list[int]
    params: SamplingParams
    checker: StopChecker
    generator: torch.Generator | None
    record_logits: bool = False
    collect: bool = False
    logprobs: int | None = None  # top alternatives to report per token (None: no logprobs)
    constraint: Any = None  # an infer.constrain.JsonCursor when the output must match a schema
    next_token: int | None = None
    cached_tokens: int = 0
    tokens: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    logits: list[torch.Tensor] = field(default_factory=list)
    # A vision prompt: the cache key of each position (image positions: the picture's),
    # the pictures (n, 3, H, W) and the seconds their encoder took.
    keys: list[int] | None = None
    pixels: torch.Tensor | None = None
    image_encode_s: float = 0.0
    t_submit: float = field(default_factory=time.perf_counter)
    t_admit: float = 0.0
    t_first: float = 0.0

    def stats(self, t_done: float) -> RequestStats:
        prefilled = len(self.prompt) - self.cached_tokens
        prefill_s = self.t_first - self.t_admit
        decode_s = t_done - self.t_first
        return RequestStats(
            prompt_tokens=len(self.prompt),
            cached_tokens=self.cached_tokens,
            generated_tokens=len(self.tokens),
            time_to_first_token_s=self.t_first - self.t_submit,
            prefill_tokens_per_s=prefilled / prefill_s if prefill_s > 0 else 0.0,
            decode_tokens_per_s=(len(self.tokens) - 1) / decode_s if decode_s > 0 else 0.0,
            total_s=t_done - self.t_submit,
            image_encode_s=self.image_encode_s,
        )
