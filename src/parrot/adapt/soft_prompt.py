"""Soft prompts (prompt tuning): N learned vectors placed before every input's embeddings.

    x = [p_1 .. p_N, embed(t_1) .. embed(t_T)]          logits kept for t_1 .. t_T only

Everything else is frozen, so the base weights stay bit-identical; only the (N, d_model)
prompt trains. The wrapper feeds N placeholder ids in front of the tokens and swaps the
token embedding for one that overwrites those N rows with the prompt, so the model's own
positions, masks and norms apply unchanged. It recomputes the whole sequence each call
(no KV cache): enough for training, evaluation and short generation.

Saved like a LoRA adapter: `adapter.safetensors` ({"prompt": (N, d)}) and
`adapter_config.json` ({"method": "soft_prompt", "prompt_tokens": N, ...}).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from parrot.adapt.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS, read_adapter_config
from parrot.errors import ParrotError
from parrot.utils.atomic import atomic_path, atomic_write_json


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


class SoftPromptModel(nn.Module):
    """`model` with N trainable prompt vectors in front of every input; same call shape."""

    def __init__(self, model: nn.Module, prompt_tokens: int, init_ids: list[int] | None = None):
        super().__init__()
        if isinstance(prompt_tokens, bool) or not isinstance(prompt_tokens, int) \
                or prompt_tokens <= 0:
            raise ParrotError(f"--prompt-tokens must be a positive integer, got {prompt_tokens!r}.")
        cfg = model.config
        if prompt_tokens >= cfg.context_length:
            raise ParrotError(f"{prompt_tokens} prompt tokens leave no room in the model's "
                              f"context of {cfg.context_length}; use fewer.")
        for p in model.parameters():
            p.requires_grad_(False)
        self.model, self.config = model, cfg
        self.n = prompt_tokens
        self.prompt = nn.Parameter(initial_prompt(model.tok_emb.weight, prompt_tokens, init_ids))
        self.base_embedding = model.tok_emb

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor | None = None,
                cache: Any = None, capture: Any = None) -> torch.Tensor:
        """tokens (B, T) -> logits (B, T, V) for the real tokens (prompt rows dropped)."""
        if cache is not None or positions is not None:
            raise ParrotError("A soft-prompt model recomputes the whole sequence on each call "
                              "and cannot use a KV cache, so the engine cannot run it yet; "
                              "use LoRA or full fine-tuning to chat with the result.")
        pad = tokens.new_zeros(tokens.shape[0], self.n)
        self.model.tok_emb = PromptedEmbedding(self.base_embedding, self.prompt)
        try:
            logits = self.model(torch.cat([pad, tokens], dim=1), capture=capture)
        finally:  # the base model is left exactly as it was given
            self.model.tok_emb = self.base_embedding
        return logits[:, self.n:]                                        # (B, T, V)


def initial_prompt(table: torch.Tensor, n: int, init_ids: list[int] | None) -> torch.Tensor:
    """Start from the embeddings of real tokens (Lester et al. find this trains best)."""
    if init_ids:
        ids = torch.tensor([init_ids[i % len(init_ids)] for i in range(n)])
    else:
        ids = torch.arange(n) % table.shape[0]
    return table.detach()[ids].clone().float()


def save_soft_prompt(model: SoftPromptModel, directory: str | Path,
                     extra: dict | None = None) -> None:
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / ADAPTER_WEIGHTS) as tmp:
        save_file({"prompt": model.prompt.detach().contiguous().cpu()}, str(tmp))
    config = {"method": "soft_prompt", "prompt_tokens": model.n, **(extra or {})}
    atomic_write_json(directory / ADAPTER_CONFIG, config)


def load_soft_prompt(model: nn.Module, directory: str | Path) -> SoftPromptModel:
    from safetensors.torch import load_file

    cfg = read_adapter_config(directory)
    wrapped = SoftPromptModel(model, int(cfg["prompt_tokens"]))
    prompt = load_file(str(Path(directory) / ADAPTER_WEIGHTS))["prompt"]
    if prompt.shape != wrapped.prompt.shape:
        raise ParrotError(f"The soft prompt in {directory} has shape {tuple(prompt.shape)}, "
                          f"but this base needs {tuple(wrapped.prompt.shape)}.")
    with torch.no_grad():
        wrapped.prompt.copy_(prompt)
    return wrapped
