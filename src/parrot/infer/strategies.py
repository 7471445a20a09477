"""How a model family fills a slot and takes a decode step: the engine's two strategies.

The engine's loop (admit, decode, sample, stop) is the same for every model; what differs
is what a prompt is and what a forward reads:

    DecoderOnlySteps     the prompt is the decoder's own prefix: prefill it after the prefix
                         the slot already holds; a step reads the self-attention cache.
    EncoderDecoderSteps  the prompt is a source, which the decoder never sees as tokens:
                         encode it once into `CrossSlots` (each decoder layer's cross-attention
                         keys/values and the source mask, kept until the request ends), start
                         the decoder from its start token; a step reads both caches.

A strategy has `prompt_positions(prompt)` (positions the decoder holds once the prompt is
in), `prefill(index, request)` → (1, V) logits of the first token, which also records the
ids the slot now holds, and `forward_rows(tokens, positions, rows, length)` → (rows, 1, V).
A new family (a vision prefix, say) is a third class with these three methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from parrot.errors import ParrotError
from parrot.infer.requests import Request
from parrot.model import KVCache
from parrot.model.seq2seq import Seq2SeqCache

if TYPE_CHECKING:
    from parrot.infer.engine import Engine


class Slot:
    """One row of the KV cache: the ids whose keys/values it holds, and who is using it."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.request: Request | None = None


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading ids two sequences share: [1, 2, 3], [1, 2, 4, 5] → 2."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


class DecoderOnlySteps:
    """A decoder-only model: a slot keeps its prompt's keys/values, and a new prompt that
    extends them (the next turn of a chat) prefills only the new suffix."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # The compiled graph reads the cache length as symbolic from the start (see
        # `Engine.cache_view`); a new batch size recompiles once more.
        self.forward = (torch.compile(engine.model, fullgraph=False) if engine.compiled
                        else engine.model)

    def prompt_positions(self, prompt: list[int]) -> int:
        return len(prompt)

    def prefill(self, index: int, request: Request) -> torch.Tensor:
        """Compute the prompt's keys/values (after any reused prefix); its last logits (1, V)."""
        engine = self.engine
        slot = engine.slots[index]
        reuse = min(common_prefix_length(slot.ids, request.prompt), len(request.prompt) - 1)
        suffix = request.prompt[reuse:]
        del slot.ids[reuse:]  # an interrupted forward must not leave a stale claim behind
        tokens = torch.tensor([suffix], dtype=torch.long, device=engine.device)
        positions = torch.arange(reuse, len(request.prompt), device=engine.device)[None]
        view = engine.cache_view(index, index + 1, len(request.prompt))
        logits = last_logits(engine.model, tokens, positions, view)
        slot.ids = list(request.prompt)
        request.cached_tokens = reuse
        return logits

    def forward_rows(self, tokens: torch.Tensor, positions: torch.Tensor,
                     rows: int, length: int) -> torch.Tensor:
        """One decode forward over cache rows 0..rows-1."""
        # The model attends over its whole cache argument: a view cut to this step's bucket.
        view = self.engine.cache_view(0, rows, length)
        return self.forward(tokens, positions=positions, cache=view)


class EncoderDecoderSteps:
    """An encoder-decoder: each slot also keeps its source's cross-attention keys/values and
    mask, written once at admission; the decoder starts from `start_id` at position 0
    (nothing of a previous request is reused)."""

    def __init__(self, engine: Engine, start_id: int | None = None) -> None:
        if engine.compiled:
            raise ParrotError("--compile supports decoder-only models; drop it for an "
                              "encoder-decoder.")
        self.engine = engine
        self.cross = CrossSlots(engine.model, engine.max_batch, engine.config.context_length,
                                engine.cache.keys.dtype, engine.device)
        self.start_id = seq2seq_start_id(engine.tokenizer) if start_id is None else start_id

    def prompt_positions(self, prompt: list[int]) -> int:
        return 1  # the decoder holds only its start token

    def prefill(self, index: int, request: Request) -> torch.Tensor:
        """Run the encoder once on the source, keep its cross keys/values in the slot, and
        decode the start token at position 0: logits (1, V)."""
        engine = self.engine
        self.cross.admit(index, request.prompt)
        tokens = torch.tensor([[self.start_id]], dtype=torch.long, device=engine.device)
        positions = torch.zeros(1, 1, dtype=torch.long, device=engine.device)
        logits = self.forward_rows(tokens, positions, 1, 1, start=index)[:, -1]
        engine.slots[index].ids = [self.start_id]
        return logits

    def forward_rows(self, tokens: torch.Tensor, positions: torch.Tensor,
                     rows: int, length: int, start: int = 0) -> torch.Tensor:
        """One decode forward over cache rows start..start+rows-1 (self and cross attention)."""
        stop = start + rows
        cache = self.cross.cache(self.engine.cache_view(start, stop, length), start, stop)
        return self.engine.model.decode(tokens, None, positions=positions, cache=cache)


def last_logits(model: torch.nn.Module, tokens: torch.Tensor, positions: torch.Tensor,
                cache: KVCache) -> torch.Tensor:
    """Logits (B, V) at the last position only: the output head (49152 x 576 for
    SmolLM2) on one row instead of T rows. Models without `hidden`/`logits` run whole."""
    hidden, head = getattr(model, "hidden", None), getattr(model, "logits", None)
    if hidden is None or head is None:
        return model(tokens, positions=positions, cache=cache)[:, -1]
    return head(hidden(tokens, positions, cache)[:, -1])


class CrossSlots:
    """Per-layer cross keys/values (max_batch, Hkv, max_source, D) and a source mask."""

    def __init__(self, model: torch.nn.Module, max_batch: int, max_source: int,
                 dtype: torch.dtype, device: torch.device) -> None:
        cfg = model.config
        shape = (max_batch, cfg.kv_heads, max_source, cfg.head_size)
        self.model, self.max_source = model, max_source
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in model.decoder]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in model.decoder]
        # Slot 0 stays visible in idle rows so their (discarded) attention is never all -inf.
        self.mask = torch.zeros(max_batch, max_source, dtype=torch.bool, device=device)
        self.mask[:, 0] = True

    def admit(self, row: int, source: list[int]) -> None:
        """Encode `source` (one request) and store its cross keys/values in `row`."""
        if len(source) > self.max_source:
            raise ParrotError(f"The source has {len(source)} tokens but the encoder holds "
                              f"{self.max_source}; shorten it.")
        src = torch.tensor([source], dtype=torch.long, device=self.mask.device)
        memory = self.model.encode(src)                                  # (1, S, d)
        n = len(source)
        for layer, block in enumerate(self.model.decoder):
            k, v = block.cross.project_memory(memory)                    # (1, Hkv, S, D)
            self.keys[layer][row, :, :n] = k[0]
            self.values[layer][row, :, :n] = v[0]
        self.mask[row] = False
        self.mask[row, :n] = True

    def cache(self, self_attn: KVCache, start: int, stop: int) -> Seq2SeqCache:
        """The decoder's cache for rows start..stop: its self-attention cache plus the
        cross keys/values cut to the longest source any row may hold."""
        cross = [(k[start:stop], v[start:stop]) for k, v in zip(self.keys, self.values,
                                                                 strict=True)]
        return Seq2SeqCache(self_attn, cross, self.mask[start:stop])


def seq2seq_start_id(tokenizer: object) -> int:
    """The decoder's first input: the tokenizer's <s> (or its BOS) token."""
    specials = getattr(tokenizer, "special_tokens", {}) or {}
    start = specials.get("<s>", getattr(tokenizer, "bos_id", None))
    if start is None:
        raise ParrotError("The tokenizer has no <s> or BOS token to start the decoder with; "
                          "use the tokenizer the encoder-decoder was trained with.")
    return int(start)
