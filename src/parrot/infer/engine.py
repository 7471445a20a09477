"""The generation loop: prefill a prompt once, then decode one token per step for every slot.

The engine owns one KV cache with `max_batch` rows (slots) of `max_len` positions,
allocated once. A request waits in a queue until a slot is free; it is then prefilled in
one forward pass (only the last position's logits matter), and from then on it advances
one token per `step`, together with every other active slot, in a single batched forward
where each row carries its own position (rows are ragged, right-padded). A finished slot
is freed and the next queued request takes it between steps: continuous batching.

Each slot remembers the token ids whose keys and values it holds. What a prompt is and
what a forward reads is the model family's strategy (`strategies`): a decoder-only prompt
that extends a slot's ids (the next turn of a chat) prefills only the new suffix; an
encoder-decoder's prompt is a source, encoded once. Every active row's next token is chosen
in one `sample_rows` call per step, followed by one copy of the tokens to the host.

Speed: prefill runs the output head on the last position only (`model.hidden` then
`model.logits`). With `compile=True` the decode step is a `torch.compile`d graph: one
kernel launch sequence instead of ~20 Python-dispatched operations per layer. It reads
the cache through views cut to a few bucket lengths, marked as of symbolic length, so
one graph serves every length.

The model computes; the engine decides: sampling, stop conditions and text live in
`sampling`, `stopping` and `streaming`, and are applied around the loop.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Iterable, Sequence

import torch

from parrot.errors import ParrotError
from parrot.infer.constrain import Grammars, mask_rows
from parrot.infer.logprobs import token_logprobs
from parrot.infer.requests import Completion, Request, StepOutput
from parrot.infer.sampling import RowParams, SamplingParams, sample_rows, uses_penalties
from parrot.infer.stopping import StopChecker
from parrot.infer.strategies import (
    DecoderOnlySteps,
    EncoderDecoderSteps,
    Slot,
    common_prefix_length,
)
from parrot.infer.streaming import TextStream
from parrot.infer.vision import VisionSteps, attach_images
from parrot.model import KVCache

Prompt = str | Sequence[int]
_BUCKET = 128


def truncate_left(ids: Sequence[int], max_len: int, max_new_tokens: int) -> list[int]:
    """Keep the end of a prompt so it fits: at most max_len − min(max_new_tokens, max_len // 2)."""
    keep = max(1, max_len - min(max_new_tokens, max_len // 2))
    return list(ids[-keep:]) if len(ids) > max_len else list(ids)


# The cache length when none is asked for: a model with a long context (SmolLM2: 8,192,
# Gemma 3: 32,768) would otherwise reserve a float32 cache a session rarely fills.
DEFAULT_MAX_LEN = 4096


class Engine:
    """Generation over a model and tokenizer with a fixed pool of cache slots.

    Step-level API (for a server): `submit` → request id, `step` → list of `StepOutput`,
    `cancel`, `result`. Convenience API: `generate`, `generate_batch`, `stream`.
    `start_id` is an encoder-decoder's first decoder input (default: the tokenizer's <s>).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: object,
        max_batch: int = 8,
        max_len: int | None = None,
        eos_ids: Iterable[int] | None = None,
        compile: bool = False,
        start_id: int | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        if not hasattr(model, "config"):
            raise ParrotError("The model has no `config`; pass a parrot.model.Transformer.")
        self.config = model.config
        self.max_len = _check_max_len(self.config, max_len)
        self.max_batch = max_batch
        weight = next(model.parameters())
        self.device = weight.device
        self.cache = KVCache(self.config, max_batch, self.max_len, dtype=weight.dtype,
                             device=weight.device)
        self.slots = [Slot() for _ in range(max_batch)]
        self.queue: deque[Request] = deque()
        default_eos = [getattr(tokenizer, "eos_id", None)]  # the tokenizer's, if it has one
        self.eos_ids = set(default_eos if eos_ids is None else eos_ids) - {None}
        self._next_id = 0
        self._grammar_cache: Grammars | None = None
        self._finished: dict[int, Completion] = {}
        self.compiled = compile
        # Penalty state, one row per slot, made when a request first needs it:
        # counts (max_batch, V) of generated tokens, seen (max_batch, V) in prompt or output.
        self._counts: torch.Tensor | None = None
        self._seen: torch.Tensor | None = None
        self._rows: tuple[tuple[int, ...], RowParams | None] = ((), None)  # (request ids, params)
        self.steps = (EncoderDecoderSteps(self, start_id)
                      if getattr(self.config, "is_encoder_decoder", False)
                      else VisionSteps(self) if hasattr(model, "vision_config")
                      else DecoderOnlySteps(self))

    # ---- step-level API -------------------------------------------------------------

    def submit(
        self,
        prompt: Prompt,
        params: SamplingParams | None = None,
        *,
        truncate: bool = False,
        record_logits: bool = False,
        collect: bool = False,
        logprobs: int | None = None,
        json_schema: object = None,
        json_trigger: str | None = None,
    ) -> int:
        """Queue a request; returns its id. A text prompt is encoded with special tokens allowed.

        `logprobs=k` (k >= 0) attaches each token's log-probability and its k best
        alternatives to the request's `StepOutput`s (None: not computed). With `json_schema`
        (a JSON schema; `{"type": "object"}` for any object) the output is constrained to a
        document that parses and matches it (`infer.constrain`); with `json_trigger` only
        once that text has been written (the reply may be free text or, say, a tool call).
        """
        params = params or SamplingParams()
        ids, keys, pixels = attach_images(self.steps, self.encode(prompt), prompt)
        if truncate and pixels is None:
            ids = truncate_left(ids, self.max_len, params.max_new_tokens)
        self._check_prompt(ids)
        checker = StopChecker(params, self.eos_ids, self.tokenizer.token_bytes,
                              self.steps.prompt_positions(ids), self.max_len)
        request = Request(self._next_id, ids, params, checker, self._generator(params),
                          record_logits=record_logits, collect=collect, logprobs=logprobs,
                          keys=keys, pixels=pixels,
                          constraint=None if json_schema is None else
                          self._grammars().cursor(json_schema, json_trigger))
        self._next_id += 1
        self.queue.append(request)
        return request.request_id

    def step(self) -> list[StepOutput]:
        """Admit queued requests into free slots (prefill), else decode every active slot."""
        with torch.inference_mode():
            if self.queue and self._free_slots():
                return self._admit()
            return self._decode()

    def cancel(self, request_id: int) -> None:
        """Drop a queued or running request; its slot (and what it cached) is kept for reuse."""
        self.queue = deque(r for r in self.queue if r.request_id != request_id)
        for slot in self.slots:
            if slot.request is not None and slot.request.request_id == request_id:
                slot.request = None

    def result(self, request_id: int) -> Completion | None:
        """The Completion of a finished request submitted with `collect=True`, handed over
        once (removed from the engine); None while it is queued or running."""
        return self._finished.pop(request_id, None)

    def has_work(self) -> bool:
        return bool(self.queue) or any(s.request is not None for s in self.slots)

    def encode(self, prompt: Prompt) -> list[int]:
        """Token ids of a text prompt (or ids as given). Models trained with BOS in front of
        every text (a tokenizer with `add_bos`, e.g. Gemma from GGUF) get it unless the text
        already starts with it, as a chat template that writes the BOS token does."""
        text = getattr(prompt, "text", None) or prompt  # an ImagePrompt may carry a text
        if not isinstance(text, str):
            return [int(t) for t in prompt]
        ids = self.tokenizer.encode(text, allowed_special="all")
        bos = getattr(self.tokenizer, "bos_id", None)
        if getattr(self.tokenizer, "add_bos", False) and bos is not None and ids[:1] != [bos]:
            ids = [bos, *ids]
        return ids

    def cache_view(self, start: int, stop: int, length: int) -> KVCache:
        """Rows start..stop of the cache, cut to the bucket holding `length` positions.

        Slots past the longest row are masked for every query anyway, so leaving them out
        changes no result and makes a short conversation cost what it uses, not max_len.
        A few bucket sizes keep the shapes few, for the compiled decode step. (KVCache has
        no public way to cut its length; `rows` cuts only the batch.)
        """
        cut = self._bucket(length)
        keys = self.cache.keys[:, start:stop, :, :cut]
        values = self.cache.values[:, start:stop, :, :cut]
        if self.compiled:  # one graph with a symbolic length, not one per bucket
            for view in (keys, values):
                torch._dynamo.maybe_mark_dynamic(view, 3)
        return KVCache(self.config, stop - start, cut, _tensors=(keys, values))

    # ---- convenience API ------------------------------------------------------------

    def generate(self, prompt: Prompt, params: SamplingParams | None = None,
                 **options: bool) -> Completion:
        """Run one request to the end (other submitted requests advance alongside)."""
        return self.generate_batch([prompt], params, **options)[0]

    def generate_batch(self, prompts: Sequence[Prompt],
                       params: SamplingParams | Sequence[SamplingParams] | None = None,
                       **options: bool) -> list[Completion]:
        """Run several requests together, up to `max_batch` at a time; results in order.
        `params`: one SamplingParams for all, or one per prompt (e.g. a seed each)."""
        each = list(params) if isinstance(params, (list, tuple)) else [params] * len(prompts)
        if len(each) != len(prompts):
            raise ParrotError(f"generate_batch got {len(prompts)} prompts but {len(each)} "
                              "sampling parameter sets; give one set, or one per prompt.")
        ids = [self.submit(p, q, collect=True, **options) for p, q in zip(prompts, each,
                                                                         strict=True)]
        while any(i not in self._finished for i in ids):
            self.step()
        return [self._finished.pop(i) for i in ids]

    def stream(self, prompt: Prompt, params: SamplingParams | None = None,
               **options: bool) -> TextStream:
        """An iterator of text deltas; `.completion` holds the result once it is exhausted."""
        return TextStream(self, self.submit(prompt, params, **options))

    # ---- internals ------------------------------------------------------------------

    def _admit(self) -> list[StepOutput]:
        """Prefill queued requests into free slots, then choose their first tokens together."""
        indices, logits = [], []
        try:
            while self.queue and self._free_slots():
                request = self.queue.popleft()
                index = self._pick_slot(request.keys or request.prompt)
                logits.append(self._prefill(index, request))
                indices.append(index)
        except BaseException:  # the failing request is dropped; the others wait to try again
            for index in reversed(indices):
                self.queue.appendleft(self.slots[index].request)
                self.slots[index].request = None
            raise
        return self._advance(indices, torch.cat(logits))

    def _prefill(self, index: int, request: Request) -> torch.Tensor:
        """Put the prompt into slot `index` (the strategy's prefill); its first logits (1, V)."""
        request.t_admit = time.perf_counter()
        logits = self.steps.prefill(index, request)
        self.slots[index].request = request
        if uses_penalties(request.params):
            self._reset_penalties(index, request.prompt, logits.shape[-1])
        request.t_first = time.perf_counter()
        return logits

    def _decode(self) -> list[StepOutput]:
        """One token for every active slot in one forward over rows [0, highest active]."""
        active = [i for i, s in enumerate(self.slots) if s.request is not None]
        if not active:
            return []
        rows = active[-1] + 1
        tokens = torch.zeros(rows, 1, dtype=torch.long)
        positions = torch.zeros(rows, 1, dtype=torch.long)
        for i in active:
            tokens[i, 0] = self.slots[i].request.next_token
            positions[i, 0] = len(self.slots[i].ids)
        length = int(positions.max()) + 1
        for i in set(range(rows)) - set(active):
            # An idle row inside the range computes garbage just past its kept prefix,
            # cutting the prefix if it reaches the end of this step's view.
            kept = self.slots[i].ids
            del kept[self._bucket(length) - 1 :]
            positions[i, 0] = len(kept)
        logits = self.steps.forward_rows(tokens.to(self.device), positions.to(self.device),
                                         rows, length)
        for i in active:
            self.slots[i].ids.append(self.slots[i].request.next_token)
        # Rows 0..rows-1 all active (the usual case): a view, no index copied to the device.
        return self._advance(active, logits[:, -1] if len(active) == rows else logits[active, -1])

    def _advance(self, indices: list[int], logits: torch.Tensor) -> list[StepOutput]:
        """Choose the next token of slots `indices` from their (n, V) logits in one sampling
        call and one copy to the host, then apply each request's stop conditions."""
        requests = [self.slots[i].request for i in indices]
        key = tuple(r.request_id for r in requests)
        if key != self._rows[0]:  # the rows' params change only when a request joins or leaves
            self._rows = key, RowParams.of([r.params for r in requests], self.device)
        penalized = any(uses_penalties(r.params) for r in requests)
        rows = torch.tensor(indices, device=self.device) if penalized else None
        state = (self._counts[rows], self._seen[rows]) if penalized else ()
        constrained = [(j, r.constraint, self._tokens_left(r)) for j, r in enumerate(requests)
                       if r.constraint is not None]
        if constrained:
            logits = mask_rows(logits, constrained)
        chosen = sample_rows(logits, self._rows[1], [r.generator for r in requests], *state)
        if penalized:
            self._counts[rows, chosen] += 1
            self._seen[rows, chosen] = True
        return [self._emit(self.slots[i], logits[j : j + 1], token)
                for j, (i, token) in enumerate(zip(indices, chosen.tolist(), strict=True))]

    def _emit(self, slot: Slot, logits: torch.Tensor, token: int) -> StepOutput:
        """Record one chosen token (from (1, V) logits) for a slot's request; maybe finish."""
        request = slot.request
        if request.record_logits:
            request.logits.append(logits[0].float().cpu())
        request.tokens.append(token)
        if request.constraint is not None:
            request.constraint.advance(token)
        delta = request.checker.push(token)
        request.texts.append(delta.text)
        request.next_token = token
        scored = None if request.logprobs is None else \
            token_logprobs(logits, [token], request.logprobs)[0]
        if delta.finish_reason is None:
            return StepOutput(request.request_id, token, delta.text, logprobs=scored)
        completion = self._complete(request, delta.finish_reason, delta.stop_reason)
        slot.request = None
        return StepOutput(request.request_id, token, delta.text, completion, scored)

    def _reset_penalties(self, index: int, prompt: list[int], vocab: int) -> None:
        """Slot `index` starts counting afresh: nothing generated, the prompt's ids seen."""
        if self._counts is None:
            self._counts = torch.zeros(self.max_batch, vocab, device=self.device)
            self._seen = torch.zeros(self.max_batch, vocab, dtype=torch.bool, device=self.device)
        self._counts[index] = 0
        self._seen[index] = False
        self._seen[index, torch.tensor(prompt, device=self.device)] = True

    def _complete(self, request: Request, finish: str, reason: int | str | None) -> Completion:
        completion = Completion(
            request.request_id, request.prompt, request.tokens, "".join(request.texts),
            finish, reason, request.stats(time.perf_counter()),
            torch.stack(request.logits) if request.record_logits else None,
        )
        if request.collect:
            self._finished[request.request_id] = completion
        return completion

    def _bucket(self, length: int) -> int:
        """Cache positions a forward attends over: `length` rounded up to a multiple of 128."""
        return min(self.max_len, -(-length // _BUCKET) * _BUCKET)

    def _free_slots(self) -> list[int]:
        return [i for i, s in enumerate(self.slots) if s.request is None]

    def _pick_slot(self, prompt: list[int]) -> int:
        """The free slot sharing the longest prefix with the prompt; the lowest index on ties."""
        free = self._free_slots()
        return max(free, key=lambda i: (common_prefix_length(self.slots[i].ids, prompt), -i))

    def _check_prompt(self, ids: list[int]) -> None:
        if not ids:
            raise ParrotError("The prompt is empty; give at least one token of text.")
        if len(ids) > self.max_len:
            raise ParrotError(
                f"The prompt has {len(ids)} tokens but the context holds {self.max_len}; "
                "shorten it or ask for truncation (--truncate)."
            )
        vocab = self.config.vocab_size
        if min(ids) < 0 or max(ids) >= vocab:
            raise ParrotError(f"Prompt token ids must be in [0, {vocab}); got {min(ids)}.."
                              f"{max(ids)}.")

    def _grammars(self) -> Grammars:
        if self._grammar_cache is None:
            self._grammar_cache = Grammars(self.tokenizer, self.config.vocab_size, self.eos_ids)
        return self._grammar_cache

    def _tokens_left(self, request: Request) -> int:
        generated = len(request.tokens)
        return min(request.params.max_new_tokens - generated,
                   self.max_len - len(request.prompt) - generated)

    def _generator(self, params: SamplingParams) -> torch.Generator | None:
        if params.greedy:
            return None
        seed = params.seed if params.seed is not None else random.SystemRandom().getrandbits(63)
        return torch.Generator(device=self.device).manual_seed(seed)


def _check_max_len(config, max_len: int | None) -> int:
    """The cache length: the model's context up to DEFAULT_MAX_LEN unless asked otherwise
    (beyond the context only where positions allow)."""
    if max_len is None:
        return min(config.context_length, DEFAULT_MAX_LEN)
    if max_len < 1:
        raise ParrotError(f"max_len must be at least 1, got {max_len}.")
    if max_len > config.context_length and config.positions in ("learned", "sinusoidal", "rope"):
        raise ParrotError(  # the position (or RoPE) tables hold context_length positions
            f"max_len {max_len} exceeds the model's context of {config.context_length} "
            f"positions ({config.positions} positions cannot go further); lower it."
        )
    return max_len
