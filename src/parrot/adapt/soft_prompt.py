"""Soft prompts (prompt tuning): N learned vectors placed before every input's embeddings.

    x = [p_1 .. p_N, embed(t_1) .. embed(t_T)]          logits kept for t_1 .. t_T only

Everything else is frozen, so the base weights stay bit-identical; only the (N, d_model)
prompt trains. The wrapper feeds N placeholder ids in front of the tokens and swaps the
token embedding for one that overwrites those N rows with the prompt, so the model's own
positions, masks and norms apply unchanged. Real token t sits at model position t + N.

With a KV cache (the engine) the wrapper behaves like a model with N fewer positions:
the prompt sits at model positions 0..N-1 of every row and, attention being causal, its
keys and values do not depend on what follows. They are computed once per prompt value
(`prefix_kv`) and placed in front of the caller's cache by `PrefixedCache`: a token at
caller position p is written to caller slot p, runs at model position p + N, and attends
to [prompt keys, caller slots 0..p]. The caller's cache and positions need not know the
prompt exists; `config.context_length` is the base's minus N.

Saved like a LoRA adapter (`adapter_dir.py`): `adapter.safetensors` ({"prompt": (N, d)})
and `adapter_config.json` ({"method": "soft_prompt", "prompt_tokens": N, ...}).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from parrot.adapt.adapter_dir import read_adapter_config, read_adapter_tensors, save_adapter_dir
from parrot.errors import ParrotError
from parrot.model import KVCache


class PromptedEmbedding(nn.Module):
    """The base embedding with its first N output rows replaced by the learned prompt."""

    def __init__(self, base: nn.Embedding, prompt: nn.Parameter) -> None:
        super().__init__()
        self.base, self.prompt = base, prompt

    @property
    def weight(self) -> torch.Tensor:  # the tied head and init code read `tok_emb.weight`
        return self.base.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n = self.prompt.shape[0]
        x = self.base(tokens[:, n:])                                      # (B, T, d)
        prompt = self.prompt.to(x.dtype).expand(tokens.shape[0], -1, -1)  # (B, N, d)
        return torch.cat([prompt, x], dim=1)                              # (B, N+T, d)


class PrefixedCache(KVCache):
    """A caller's cache seen through N fixed prefix slots (the soft prompt's keys/values).

    Model position q maps to caller slot q - N; `update` writes there and returns, per
    layer, [prefix (N slots), caller slots] so slot index == model position again.
    prefix_keys/values: (n_layers, 1, Hkv, N, D), shared by every row.
    """

    def __init__(self, inner: KVCache, prefix_keys: torch.Tensor,
                 prefix_values: torch.Tensor) -> None:
        super().__init__(inner.config, inner.batch_size, inner.max_len,
                         _tensors=(inner.keys, inner.values))
        self.inner, self.prefix = inner, (prefix_keys, prefix_values)

    @property
    def n(self) -> int:
        return self.prefix[0].shape[3]

    @property
    def max_len(self) -> int:
        return self.n + self.inner.max_len

    def rows(self, start: int, stop: int) -> PrefixedCache:
        return PrefixedCache(self.inner.rows(start, stop), *self.prefix)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor,
               positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        layer_k, layer_v = self.inner.update(layer, k, v, positions - self.n)
        rows = layer_k.shape[0]
        pk = self.prefix[0][layer].to(layer_k.dtype).expand(rows, -1, -1, -1)  # (B, Hkv, N, D)
        pv = self.prefix[1][layer].to(layer_v.dtype).expand(rows, -1, -1, -1)
        return torch.cat([pk, layer_k], dim=2), torch.cat([pv, layer_v], dim=2)


class SoftPromptModel(nn.Module):
    """`model` with N trainable prompt vectors in front of every input; same call shape.

    forward/hidden/logits take what the base takes (tokens, positions, cache, capture),
    with positions counted from the first real token, so the engine drives it like a
    base model whose context is N positions shorter.
    """

    def __init__(self, model: nn.Module, prompt_tokens: int, init_ids: list[int] | None = None):
        super().__init__()
        if isinstance(prompt_tokens, bool) or not isinstance(prompt_tokens, int) \
                or prompt_tokens <= 0:
            raise ParrotError(f"--prompt-tokens must be a positive integer, got {prompt_tokens!r}.")
        cfg = model.config
        if prompt_tokens >= cfg.context_length:
            raise ParrotError(f"{prompt_tokens} prompt tokens leave no room in the model's "
                              f"context of {cfg.context_length}; use fewer.")
        model.requires_grad_(False)
        self.model = model
        self.config = cfg.replace(context_length=cfg.context_length - prompt_tokens)
        self.n = prompt_tokens
        self.prompt = nn.Parameter(initial_prompt(model.tok_emb.weight, prompt_tokens, init_ids))
        self.base_embedding = model.tok_emb
        self._prefix: tuple[tuple, tuple[torch.Tensor, torch.Tensor]] | None = None

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor | None = None,
                cache: KVCache | None = None, capture: Any = None) -> torch.Tensor:
        """tokens (B, T) -> logits (B, T, V) for the real tokens (prompt rows dropped)."""
        return self.logits(self.hidden(tokens, positions, cache, capture))

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.logits(hidden)

    def hidden(self, tokens: torch.Tensor, positions: torch.Tensor | None = None,
               cache: KVCache | None = None, capture: Any = None) -> torch.Tensor:
        """Final hidden states (B, T, d) of the real tokens; positions (B, T) from 0."""
        B, T = tokens.shape
        if positions is None:
            positions = torch.arange(T, device=tokens.device).expand(B, T)
        if cache is not None:
            prefixed = PrefixedCache(cache, *self.prefix_kv(cache.keys.dtype, tokens.device))
            return self.model.hidden(tokens, positions + self.n, prefixed, capture)
        pad = tokens.new_zeros(B, self.n)
        head = torch.arange(self.n, device=tokens.device).expand(B, self.n)
        with self._prompted():
            x = self.model.hidden(torch.cat([pad, tokens], dim=1),
                                  torch.cat([head, positions + self.n], dim=1), None, capture)
        return x[:, self.n:]                                             # (B, T, d)

    def prefix_kv(self, dtype: torch.dtype,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The prompt's keys and values at model positions 0..N-1, (L, 1, Hkv, N, D) each.

        Recomputed only when the prompt changes (its version counter) or the cache's dtype
        or device does; made outside inference mode so any later call may read them.
        """
        key = (self.prompt._version, self.prompt.data_ptr(), dtype, torch.device(device))
        if self._prefix is None or self._prefix[0] != key:
            with torch.inference_mode(False), torch.no_grad():
                cache = KVCache(self.model.config, 1, self.n, dtype=dtype, device=device)
                pad = torch.zeros(1, self.n, dtype=torch.long, device=device)
                with self._prompted():
                    self.model.hidden(pad, torch.arange(self.n, device=device)[None], cache)
            self._prefix = (key, (cache.keys, cache.values))
        return self._prefix[1]

    @contextlib.contextmanager
    def _prompted(self):
        """The base with its token embedding swapped for the prompted one, then restored."""
        self.model.tok_emb = PromptedEmbedding(self.base_embedding, self.prompt)
        try:
            yield
        finally:  # the base model is left exactly as it was given
            self.model.tok_emb = self.base_embedding


def initial_prompt(table: torch.Tensor, n: int, init_ids: list[int] | None) -> torch.Tensor:
    """Start from the embeddings of real tokens (Lester et al. find this trains best)."""
    if init_ids:
        ids = torch.tensor([init_ids[i % len(init_ids)] for i in range(n)])
    else:
        ids = torch.arange(n) % table.shape[0]
    return table.detach()[ids].clone().float()


def save_soft_prompt(model: SoftPromptModel, directory: str | Path,
                     extra: dict | None = None) -> None:
    """Write the prompt and its config (plus `extra`, e.g. the base) into `directory`."""
    save_adapter_dir(directory, {"prompt": model.prompt},
                     {"method": "soft_prompt", "prompt_tokens": model.n, **(extra or {})})


def load_soft_prompt(model: nn.Module, directory: str | Path) -> SoftPromptModel:
    """`model` wrapped with the soft prompt saved in `directory`."""
    cfg = read_adapter_config(directory)
    wrapped = SoftPromptModel(model, int(cfg["prompt_tokens"]))
    prompt = read_adapter_tensors(directory)["prompt"]
    if prompt.shape != wrapped.prompt.shape:
        raise ParrotError(f"The soft prompt in {directory} has shape {tuple(prompt.shape)}, "
                          f"but this base needs {tuple(wrapped.prompt.shape)}.")
    with torch.no_grad():
        wrapped.prompt.copy_(prompt)
    return wrapped
