"""The generation loop: prefill a prompt once, then decode one token per step for every slot.

The engine owns one KV cache with `max_batch` rows (slots) of `max_len` positions,
allocated once. A request waits in a queue until a slot is free; it is then prefilled in
one forward pass (only the last position's logits matter), and from then on it advances
one token per `step`, together with every other active slot, in a single batched forward
where each row carries its own position (rows are ragged, right-padded). A finished slot
is freed and the next queued request takes it between steps: continuous batching.

Each slot remembers the token ids whose keys and values it holds. A new prompt that
extends them (the next turn of a chat) prefills only the new suffix.

Speed: prefill runs the output head on the last position only (`model.hidden` then
`model.logits`). With `compile=True` the decode step is a `torch.compile`d graph: one
kernel launch sequence instead of ~20 Python-dispatched operations per layer. It reads
the cache through views cut to a few bucket lengths, marked as of symbolic length, so
one graph serves every length.

The model computes; the engine decides: sampling, stop conditions and text live in
`sampling`, `stopping` and `streaming`, and are applied per request around the loop.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence

import torch

from parrot.errors import ParrotError
from parrot.infer.logprobs import token_logprobs
from parrot.infer.requests import Completion, Request, StepOutput
from parrot.infer.sampling import SamplingParams, sample, uses_penalties
from parrot.infer.seq2seq_slots import CrossSlots, seq2seq_start_id
from parrot.infer.stopping import StopChecker
from parrot.model import KVCache

Prompt = str | Sequence[int]
_BUCKET = 128


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading ids two sequences share: [1, 2, 3], [1, 2, 4, 5] → 2."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def truncate_left(ids: Sequence[int], max_len: int, max_new_tokens: int) -> list[int]:
    """Keep the end of a prompt so it fits: at most max_len − min(max_new_tokens, max_len // 2)."""
    keep = max(1, max_len - min(max_new_tokens, max_len // 2))
    return list(ids[-keep:]) if len(ids) > max_len else list(ids)


class _Slot:
    """One row of the KV cache: the ids whose keys/values it holds, and who is using it."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.request: Request | None = None


class Engine:
    """Generation over a model and tokenizer with a fixed pool of cache slots.

    Step-level API (for a server): `submit` → request id, `step` → list of `StepOutput`,
    `cancel`. Convenience API: `generate`, `generate_batch`, `stream`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: object,
        max_batch: int = 8,
        max_len: int | None = None,
        eos_ids: Iterable[int] | None = None,
        compile: bool = False,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = _model_config(model)
        self.max_len = _check_max_len(self.config, max_len)
        self.max_batch = max_batch
        weight = next(model.parameters())
        self.device = weight.device
        self.cache = KVCache(self.config, max_batch, self.max_len, dtype=weight.dtype,
                             device=weight.device)
        self.slots = [_Slot() for _ in range(max_batch)]
        self.queue: deque[Request] = deque()
        self.eos_ids = set(eos_ids) if eos_ids is not None else _tokenizer_eos(tokenizer)
        self._next_id = 0
        self._finished: dict[int, Completion] = {}
        self.compiled = compile
        self._decode_forward = _compile_step(model) if compile else model
        # An encoder-decoder's prompt is its source: each slot also keeps the encoder's
        # cross-attention keys/values and source mask, written once at admission.
        self.seq2seq = bool(getattr(self.config, "is_encoder_decoder", False))
        if self.seq2seq:
            if compile:
                raise ParrotError("--compile supports decoder-only models; drop it for an "
                                  "encoder-decoder.")
            self.cross = CrossSlots(model, max_batch, self.config.context_length,
                                    weight.dtype, weight.device)
            self.start_id = seq2seq_start_id(tokenizer)

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
    ) -> int:
        """Queue a request; returns its id. A text prompt is encoded with special tokens allowed.

        `logprobs=k` (k >= 0) attaches each token's log-probability and its k best
        alternatives to the request's `StepOutput`s (None: not computed).
        """
        params = params or SamplingParams()
        ids = self.encode(prompt)
        if truncate:
            ids = truncate_left(ids, self.max_len, params.max_new_tokens)
        self._check_prompt(ids)
        decoded = 1 if self.seq2seq else len(ids)  # a decoder starts from its start token
        checker = StopChecker(params, self.eos_ids, self.tokenizer.token_bytes, decoded,
                              self.max_len)
        request = Request(self._next_id, ids, params, checker, self._generator(params),
                          record_logits=record_logits, collect=collect, logprobs=logprobs)
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
                self._release(slot)

    def has_work(self) -> bool:
        return bool(self.queue) or any(s.request is not None for s in self.slots)

    def encode(self, prompt: Prompt) -> list[int]:
        """Token ids of a text prompt (or ids as given). Models trained with BOS in front of
        every text (a tokenizer with `add_bos`, e.g. Gemma from GGUF) get it unless the text
        already starts with it, as a chat template that writes the BOS token does."""
        if not isinstance(prompt, str):
            return [int(t) for t in prompt]
        ids = self.tokenizer.encode(prompt, allowed_special="all")
        bos = getattr(self.tokenizer, "bos_id", None)
        if getattr(self.tokenizer, "add_bos", False) and bos is not None and ids[:1] != [bos]:
            ids = [bos, *ids]
        return ids

    # ---- convenience API ------------------------------------------------------------

    def generate(self, prompt: Prompt, params: SamplingParams | None = None,
                 **options: bool) -> Completion:
        """Run one request to the end (other submitted requests advance alongside)."""
        return self.generate_batch([prompt], params, **options)[0]

    def generate_batch(self, prompts: Sequence[Prompt], params: SamplingParams | None = None,
                       **options: bool) -> list[Completion]:
        """Run several requests together, up to `max_batch` at a time; results in order."""
        ids = [self.submit(p, params, collect=True, **options) for p in prompts]
        while any(i not in self._finished for i in ids):
            self.step()
        return [self._finished.pop(i) for i in ids]

    def stream(self, prompt: Prompt, params: SamplingParams | None = None,
               **options: bool) -> TextStream:
        """An iterator of text deltas; `.completion` holds the result once it is exhausted."""
        return TextStream(self, self.submit(prompt, params, **options))

    # ---- internals ------------------------------------------------------------------

    def _admit(self) -> list[StepOutput]:
        outputs = []
        while self.queue and self._free_slots():
            request = self.queue.popleft()
            index = self._pick_slot(request.prompt)
            outputs.append(self._prefill(index, request))
        return outputs

    def _prefill(self, index: int, request: Request) -> StepOutput:
        """Compute the prompt's keys/values (after any reused prefix) and pick its first token."""
        slot = self.slots[index]
        request.t_admit = time.perf_counter()
        if self.seq2seq:
            return self._prefill_seq2seq(index, request)
        reuse = min(common_prefix_length(slot.ids, request.prompt), len(request.prompt) - 1)
        suffix = request.prompt[reuse:]
        del slot.ids[reuse:]  # an interrupted forward must not leave a stale claim behind
        tokens = torch.tensor([suffix], dtype=torch.long, device=self.device)
        positions = torch.arange(reuse, len(request.prompt), device=self.device)[None]
        view = self._cache_view(index, index + 1, len(request.prompt))
        logits = last_logits(self.model, tokens, positions, view)
        slot.ids, slot.request = list(request.prompt), request
        request.slot, request.cached_tokens = index, reuse
        request.t_first = time.perf_counter()
        return self._advance(slot, logits)

    def _prefill_seq2seq(self, index: int, request: Request) -> StepOutput:
        """Run the encoder once on the source, keep its cross keys/values in the slot, and
        decode the start token at position 0 (nothing of a previous request is reused)."""
        slot = self.slots[index]
        self.cross.admit(index, request.prompt)
        tokens = torch.tensor([[self.start_id]], dtype=torch.long, device=self.device)
        positions = torch.zeros(1, 1, dtype=torch.long, device=self.device)
        cache = self.cross.cache(self._cache_view(index, index + 1, 1), index, index + 1)
        logits = self.model.decode(tokens, None, positions=positions, cache=cache)[:, -1]
        slot.ids, slot.request = [self.start_id], request
        request.slot, request.cached_tokens = index, 0
        request.t_first = time.perf_counter()
        return self._advance(slot, logits)

    def _forward_rows(self, tokens: torch.Tensor, positions: torch.Tensor,
                      rows: int, length: int) -> torch.Tensor:
        """One decode forward over cache rows 0..rows-1 (decoder-only or encoder-decoder)."""
        if self.seq2seq:
            cache = self.cross.cache(self._cache_view(0, rows, length), 0, rows)
            return self.model.decode(tokens, None, positions=positions, cache=cache)
        # The model reads its whole cache argument: a view cut to this step's bucket.
        cache = self._cache_view(0, rows, length)
        return self._decode_forward(tokens, positions=positions, cache=cache)

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
        logits = self._forward_rows(tokens.to(self.device), positions.to(self.device), rows,
                                    length)
        outputs = []
        for i in active:
            self.slots[i].ids.append(self.slots[i].request.next_token)
            outputs.append(self._advance(self.slots[i], logits[i : i + 1, -1]))
        return outputs

    def _advance(self, slot: _Slot, logits: torch.Tensor) -> StepOutput:
        """Choose the next token from (1, V) logits, apply stop conditions, maybe finish."""
        request = slot.request
        if request.record_logits:
            request.logits.append(logits[0].float().cpu())
        if uses_penalties(request.params) and request.counts is None:
            request.counts, request.seen = _penalty_state(request.prompt, logits.shape[-1],
                                                          logits.device)
        token = int(sample(logits, request.params, request.generator,
                           request.counts, request.seen)[0])
        if request.counts is not None:
            request.counts[0, token] += 1
            request.seen[0, token] = True
        request.tokens.append(token)
        delta = request.checker.push(token)
        request.texts.append(delta.text)
        request.next_token = token
        scored = None if request.logprobs is None else \
            token_logprobs(logits, [token], request.logprobs)[0]
        if delta.finish_reason is None:
            return StepOutput(request.request_id, token, delta.text, logprobs=scored)
        completion = self._complete(request, delta.finish_reason, delta.stop_reason)
        self._release(slot)
        return StepOutput(request.request_id, token, delta.text, completion, scored)

    def _complete(self, request: Request, finish: str, reason: int | str | None) -> Completion:
        completion = Completion(
            request.request_id, request.prompt, request.tokens, "".join(request.texts),
            finish, reason, request.stats(time.perf_counter()),
            torch.stack(request.logits) if request.record_logits else None,
        )
        if request.collect:
            self._finished[request.request_id] = completion
        return completion

    def _release(self, slot: _Slot) -> None:
        slot.request = None

    def _bucket(self, length: int) -> int:
        """Cache positions a forward attends over: `length` rounded up to a multiple of 128."""
        return min(self.max_len, -(-length // _BUCKET) * _BUCKET)

    def _cache_view(self, start: int, stop: int, length: int) -> KVCache:
        """Rows start..stop of the cache, cut to the bucket holding `length` positions.

        Slots past the longest row are masked for every query anyway, so leaving them out
        changes no result and makes a short conversation cost what it uses, not max_len.
        A few bucket sizes keep the shapes few, for the compiled decode step. (KVCache has
        no public way to cut its length; `rows` cuts only the batch.)
        """
        cut = self._bucket(length)
        keys = self.cache.keys[:, start:stop, :, :cut]
        values = self.cache.values[:, start:stop, :, :cut]
        for view in (keys, values):  # one graph with a symbolic length, not one per bucket
            torch._dynamo.maybe_mark_dynamic(view, 3)
        return KVCache(self.config, stop - start, cut, _tensors=(keys, values))

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

    def _generator(self, params: SamplingParams) -> torch.Generator | None:
        if params.greedy:
            return None
        seed = params.seed if params.seed is not None else random.SystemRandom().getrandbits(63)
        return torch.Generator(device=self.device).manual_seed(seed)


class TextStream:
    """Iterates the text deltas of one request, stepping the engine as needed.

    Closing it early (or an exception such as Ctrl-C in the consumer) cancels the request.
    """

    def __init__(self, engine: Engine, request_id: int) -> None:
        self.engine = engine
        self.request_id = request_id
        self.completion: Completion | None = None
        self._deltas = self._run()

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        return next(self._deltas)

    def close(self) -> None:
        self._deltas.close()

    def _run(self) -> Iterator[str]:
        try:
            while self.completion is None:
                for out in self.engine.step():
                    if out.request_id != self.request_id:
                        continue
                    if out.completion is not None:
                        self.completion = out.completion
                    if out.text:
                        yield out.text
        finally:
            if self.completion is None:
                self.engine.cancel(self.request_id)


def last_logits(model: torch.nn.Module, tokens: torch.Tensor, positions: torch.Tensor,
                cache: KVCache) -> torch.Tensor:
    """Logits (B, V) at the last position only: the output head (49152 x 576 for
    SmolLM2) on one row instead of T rows. Models without `hidden`/`logits` run whole."""
    hidden, head = getattr(model, "hidden", None), getattr(model, "logits", None)
    if hidden is None or head is None:
        return model(tokens, positions=positions, cache=cache)[:, -1]
    return head(hidden(tokens, positions, cache)[:, -1])


def _compile_step(model: torch.nn.Module):
    """The model's forward as a compiled graph for decode steps. The cache length is
    symbolic from the start (see `_cache_view`); a new batch size recompiles once more."""
    return torch.compile(model, fullgraph=False)


def _penalty_state(prompt: list[int], vocab: int, device: torch.device):
    counts = torch.zeros(1, vocab, device=device)
    seen = torch.zeros(1, vocab, dtype=torch.bool, device=device)
    seen[0, torch.tensor(prompt, device=device)] = True
    return counts, seen


def _model_config(model: torch.nn.Module):
    for name in ("config", "cfg"):
        if hasattr(model, name):
            return getattr(model, name)
    raise ParrotError("The model has no `config`; pass a parrot.model.Transformer.")


def _check_max_len(config, max_len: int | None) -> int:
    """The cache length: the model's context unless asked otherwise (only where positions allow)."""
    if max_len is None:
        return config.context_length
    if max_len < 1:
        raise ParrotError(f"max_len must be at least 1, got {max_len}.")
    if max_len > config.context_length and config.positions in ("learned", "sinusoidal", "rope"):
        raise ParrotError(  # the position (or RoPE) tables hold context_length positions
            f"max_len {max_len} exceeds the model's context of {config.context_length} "
            f"positions ({config.positions} positions cannot go further); lower it."
        )
    return max_len


def _tokenizer_eos(tokenizer: object) -> set[int]:
    eos = getattr(tokenizer, "eos_id", None)
    return set() if eos is None else {eos}
