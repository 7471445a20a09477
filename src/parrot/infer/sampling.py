"""Choosing the next token: pure functions on (B, V) logits.

Generation picks one token from the last position's logits, again and again. Each step
here is a small function a reader can hold against its formula; `sample` chains them in
the usual order (penalties → temperature → top-k → top-p → min-p → draw). Randomness
comes only from the `torch.Generator` passed in, so a request with a seed replays exactly.

Each step takes one number for every row, or each row's own value as a (B, 1) tensor: the
engine samples every active row in one call, `sample_rows`, each row under its own
parameters (`RowParams`); it equals `sample` row by row.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from parrot.errors import ParrotError


@dataclass(frozen=True)
class SamplingParams:
    """How one request chooses tokens and when it stops.

    `temperature=0` means greedy (argmax). `top_k=0`, `top_p=1`, `min_p=0` and the neutral
    penalties (1, 0, 0) switch those steps off. `seed=None` draws a fresh seed.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    seed: int | None = None
    max_new_tokens: int = 128
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):  # a lone string is one stop string, not its characters
            object.__setattr__(self, "stop", (self.stop,))
        object.__setattr__(self, "stop", tuple(self.stop))
        object.__setattr__(self, "stop_token_ids", tuple(self.stop_token_ids))
        for problem in _problems(self):
            raise ParrotError(problem)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1

    def replace(self, **changes: object) -> SamplingParams:
        return dataclasses.replace(self, **changes)  # checked again by __post_init__


def _problems(p: SamplingParams) -> list[str]:
    """Every rule a SamplingParams breaks, each as a sentence that says what to change."""
    checks = [
        (_finite(p.temperature) and p.temperature >= 0,
         f"temperature must be a number >= 0 (0 means greedy), got {p.temperature}."),
        (isinstance(p.top_k, int) and p.top_k >= 0,
         f"top_k must be an integer >= 0 (0 switches it off), got {p.top_k}."),
        (_finite(p.top_p) and 0 < p.top_p <= 1,
         f"top_p must be in (0, 1] (1 switches it off), got {p.top_p}."),
        (_finite(p.min_p) and 0 <= p.min_p <= 1, f"min_p must be in [0, 1], got {p.min_p}."),
        (_finite(p.repetition_penalty) and p.repetition_penalty > 0,
         f"repetition_penalty must be > 0 (1 switches it off), got {p.repetition_penalty}."),
        (_finite(p.frequency_penalty), "frequency_penalty must be a finite number."),
        (_finite(p.presence_penalty), "presence_penalty must be a finite number."),
        (isinstance(p.max_new_tokens, int) and p.max_new_tokens >= 1,
         f"max_new_tokens must be an integer >= 1, got {p.max_new_tokens}."),
        (all(isinstance(s, str) and s for s in p.stop), "stop strings must be non-empty text."),
        (p.seed is None or isinstance(p.seed, int), f"seed must be an integer, got {p.seed!r}."),
    ]
    return [message for ok, message in checks if not ok]


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


Number = float | torch.Tensor  # one value for every row, or each row's own (B, 1)


def apply_penalties(
    logits: torch.Tensor,
    counts: torch.Tensor,
    seen: torch.Tensor,
    repetition: Number = 1.0,
    frequency: Number = 0.0,
    presence: Number = 0.0,
) -> torch.Tensor:
    """Discourage tokens already used (neutral values change nothing).

    counts (B, V): how often each token was generated; seen (B, V) bool: in prompt or output.
    repetition r (CTRL, as in Hugging Face): z → z / r if z > 0 else z · r, for seen tokens.
    frequency α and presence β (OpenAI): z → z − α · count − β · [count > 0].
    """
    scaled = torch.where(logits > 0, logits / repetition, logits * repetition)
    z = torch.where(seen, scaled, logits)
    return z - frequency * counts - presence * (counts > 0).to(z.dtype)


def apply_temperature(logits: torch.Tensor, temperature: Number) -> torch.Tensor:
    """z / T: T < 1 sharpens softmax(z / T), T > 1 flattens it (T must be > 0 here)."""
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int | torch.Tensor, k_max: int | None = None
                 ) -> torch.Tensor:
    """Keep the k largest logits in each row, set the rest to −inf (k = 0 or k ≥ V: no-op).

    k is one number, or each row's own (B, 1) long tensor with every k ≤ k_max. Ties with
    the k-th value are kept, so a row may keep slightly more than k tokens.
    """
    vocab = logits.shape[-1]
    if not isinstance(k, torch.Tensor):
        if k <= 0 or k >= vocab:
            return logits
        k, k_max = torch.full((*logits.shape[:-1], 1), k, device=logits.device), k
    values = torch.topk(logits, k_max, dim=-1).values                   # (B, k_max)
    kth = values.gather(-1, (k - 1).clamp(0, k_max - 1))                # (B, 1)
    kth = torch.where((k > 0) & (k < vocab), kth, float("-inf"))
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: Number) -> torch.Tensor:
    """Nucleus: keep the smallest set of most likely tokens whose probability mass is ≥ p.

    Sort probabilities descending; token i (in sorted order) is kept when the mass of the
    tokens before it is still < p. The most likely token is therefore always kept; p = 1
    keeps every token.
    """
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = torch.cumsum(probs, dim=-1) - probs
    drop_sorted = (mass_before >= p) & (p < 1.0)  # rounding may reach 1 before the end
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def min_p_filter(logits: torch.Tensor, min_p: Number) -> torch.Tensor:
    """Keep tokens with probability ≥ min_p · (probability of the most likely token).

    In logit space: z_i ≥ z_max + ln(min_p); min_p = 0 keeps every token.
    """
    log_min_p = torch.as_tensor(min_p, device=logits.device).log()      # ln 0 = -inf
    threshold = logits.max(dim=-1, keepdim=True).values + log_min_p
    return logits.masked_fill(logits < threshold, float("-inf"))


def greedy(logits: torch.Tensor) -> torch.Tensor:
    """argmax over the vocabulary: (B, V) → (B,)."""
    return logits.argmax(dim=-1)


def uses_penalties(params: SamplingParams) -> bool:
    """Whether any penalty is on (they need the counts and seen tokens of `apply_penalties`)."""
    neutral = (1.0, 0.0, 0.0)
    return (params.repetition_penalty, params.frequency_penalty, params.presence_penalty) != neutral


@dataclass(frozen=True)
class RowParams:
    """The sampling parameters of B rows, each a (B, 1) float32 tensor (`top_k` long).

    A greedy row holds temperature 1 so its (unused) shaped logits stay finite. `params`
    keeps the rows' SamplingParams, so which steps run is decided on the host without
    reading the tensors back.
    """

    params: tuple[SamplingParams, ...]
    temperature: torch.Tensor
    top_k: torch.Tensor
    top_p: torch.Tensor
    min_p: torch.Tensor
    repetition: torch.Tensor
    frequency: torch.Tensor
    presence: torch.Tensor

    @classmethod
    def of(cls, params: Sequence[SamplingParams],
           device: torch.device | str | None = None) -> RowParams:
        """The rows of `params`, built as one (B, 7) table: one copy to the device."""
        table = torch.tensor([[1.0 if p.greedy else p.temperature, p.top_k, p.top_p, p.min_p,
                               p.repetition_penalty, p.frequency_penalty, p.presence_penalty]
                              for p in params], dtype=torch.float32, device=device)
        t, k, top_p, min_p, r, f, presence = table.split(1, dim=1)
        return cls(tuple(params), t, k.long(), top_p, min_p, r, f, presence)


def shape_logits(logits: torch.Tensor, params: SamplingParams | RowParams) -> torch.Tensor:
    """Temperature, top-k, top-p and min-p in that order: the distribution a row draws from.

    With RowParams each row uses its own parameters; a filter no row uses is skipped.
    """
    rows = params if isinstance(params, RowParams) else RowParams.of([params], logits.device)
    vocab = logits.shape[-1]
    z = apply_temperature(logits.float(), rows.temperature)
    ks = [p.top_k for p in rows.params if 0 < p.top_k < vocab]
    if ks:
        z = top_k_filter(z, rows.top_k.expand(len(z), 1), max(ks))
    if any(p.top_p < 1.0 for p in rows.params):
        z = top_p_filter(z, rows.top_p)
    if any(p.min_p > 0.0 for p in rows.params):
        z = min_p_filter(z, rows.min_p)
    return z


def sample(
    logits: torch.Tensor,
    params: SamplingParams,
    generator: torch.Generator | None = None,
    counts: torch.Tensor | None = None,
    seen: torch.Tensor | None = None,
) -> torch.Tensor:
    """The next token for each row of (B, V) logits under `params`: returns (B,) long.

    Every row draws from the one `generator`, in row order. Penalties need `counts` and
    `seen` (see `apply_penalties`); without them they are skipped.
    """
    n = len(logits)
    return sample_rows(logits, RowParams.of([params] * n, logits.device), [generator] * n,
                       counts, seen)


def sample_rows(
    logits: torch.Tensor,
    rows: RowParams,
    generators: Sequence[torch.Generator | None],
    counts: torch.Tensor | None = None,
    seen: torch.Tensor | None = None,
) -> torch.Tensor:
    """The next token of every row of (B, V) logits, each under its own parameters: (B,) long.

    Equals `sample(logits[i:i+1], rows.params[i], generators[i], counts[i:i+1], seen[i:i+1])`
    for every row i. Greedy rows take the argmax; each other row draws with its own
    generator, so a seeded request replays whatever shares its batch.
    """
    z = logits.float()
    if counts is not None and seen is not None:
        z = apply_penalties(z, counts, seen, rows.repetition, rows.frequency, rows.presence)
    chosen = greedy(z)
    drawn = [i for i, p in enumerate(rows.params) if not p.greedy]
    if not drawn:
        return chosen
    probs = torch.softmax(shape_logits(z, rows), dim=-1)
    for i in drawn:
        chosen[i : i + 1] = torch.multinomial(probs[i : i + 1], 1, generator=generators[i])[:, 0]
    return chosen
