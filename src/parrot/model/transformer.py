"""The decoder-only transformer: embeddings, L blocks, a final norm and the output head.

    logits = head(norm(block_L(... block_1(embed(tokens) + pos(positions)))))

`forward` returns logits only: no loss, no sampling, and no state left on the modules.
A KV cache and an attention capture, when wanted, are objects the caller passes in.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
from torch import nn

from parrot.errors import ParrotError
from parrot.model.attention import AttentionCapture, AttentionInputs, causal_mask
from parrot.model.block import Block
from parrot.model.cache import KVCache
from parrot.model.config import ModelConfig
from parrot.model.heads import HeadTransform, check_encoder_inputs, with_padding
from parrot.model.norms import LayerNorm, RMSNorm, make_norm
from parrot.model.positions import (
    alibi_bias,
    alibi_slopes,
    rope_lookup,
    rope_table,
    sinusoidal_table,
)

INIT_STD = 0.02


def gpt2_init(model: nn.Module, depth_of: Callable[[str], int]) -> None:
    """GPT-2 initialisation from torch's global RNG: Linear/Embedding weights ~ N(0, 0.02),
    biases 0, norm weights 1; the projections writing into the residual stream (o_proj,
    down_proj) get 0.02 / sqrt(2 * depth), depth_of(module name) being the layers of the
    stack they sit in."""
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            residual = name.rsplit(".", 1)[-1] in ("o_proj", "down_proj")
            std = INIT_STD / math.sqrt(2 * depth_of(name)) if residual else INIT_STD
            nn.init.normal_(module.weight, 0.0, std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (LayerNorm, RMSNorm)):
            nn.init.ones_(module.weight)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)


def register_rope(model: nn.Module, name: str, cfg: ModelConfig, theta: float) -> None:
    """Buffers `{name}_cos`, `{name}_sin`: the rotations at every position, (context_length,
    head_dim / 2) each (not saved: rebuilt from the config)."""
    cos, sin = rope_table(cfg.context_length, cfg.head_size, theta)
    model.register_buffer(f"{name}_cos", cos, persistent=False)
    model.register_buffer(f"{name}_sin", sin, persistent=False)


def attention_inputs(positions: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None,
                     cache: KVCache | None, capture: AttentionCapture | None, causal: bool,
                     slopes: torch.Tensor | None = None) -> AttentionInputs:
    """What every layer's attention reads: the mask, and the ALiBi bias when given its
    slopes. Keys are cache slots (slot == position; a query sees slots up to its own,
    over the whole cache given) or, without a cache, this call's tokens."""
    device = positions.device
    kv_len = positions.shape[1] if cache is None else cache.max_len
    k_pos = torch.arange(kv_len, device=device) if cache is not None else None
    bias = None
    if slopes is not None:
        bias = alibi_bias(slopes, positions, positions if k_pos is None else k_pos, causal)
    mask = None
    if cache is not None:
        mask = causal_mask(positions, k_pos)
    elif causal and (bias is not None or capture is not None):
        index = torch.arange(positions.shape[1], device=device)
        mask = causal_mask(index[None], index)
    is_causal = causal and cache is None and bias is None
    return AttentionInputs(positions, rope, mask, bias, is_causal, cache, capture, kv_len)


def with_head_mask(inputs: AttentionInputs, head_mask: torch.Tensor,
                   cfg: ModelConfig) -> AttentionInputs:
    """The inputs with per-head gates (n_layers, n_heads), for global and sliding layers."""
    if tuple(head_mask.shape) != (cfg.n_layers, cfg.n_heads):
        raise ParrotError(f"head_mask must have shape (n_layers, n_heads) = "
                          f"({cfg.n_layers}, {cfg.n_heads}), got {tuple(head_mask.shape)}.")
    local = None if inputs.local is None else \
        dataclasses.replace(inputs.local, head_mask=head_mask)
    return dataclasses.replace(inputs, head_mask=head_mask, local=local)


class Transformer(nn.Module):
    """A decoder (or, with causal=False, an encoder) configured by a `ModelConfig`."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        learned = cfg.positions == "learned"
        self.pos_emb = nn.Embedding(cfg.context_length, cfg.d_model) if learned else None
        if cfg.positions == "sinusoidal":
            table = sinusoidal_table(cfg.context_length, cfg.d_model)
            self.register_buffer("pos_table", table, persistent=False)
        if cfg.positions == "rope":
            register_rope(self, "rope", cfg, cfg.rope_theta)
            if cfg.sliding_window is not None and cfg.rope_local_theta is not None:
                register_rope(self, "rope_local", cfg, cfg.rope_local_theta)
        if cfg.positions == "alibi":  # built once, not copied to the device every forward
            self.register_buffer("alibi_slopes", alibi_slopes(cfg.n_heads), persistent=False)
        # BERT: segment (token-type) embeddings and a norm right after the embedding sum.
        types = cfg.type_vocab_size
        self.type_emb = nn.Embedding(types, cfg.d_model) if types else None
        self.embed_norm = make_norm(cfg) if cfg.embed_norm else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        # Post-norm blocks already end in a norm; pre-norm stacks need one before the head.
        pre = cfg.norm_placement in ("pre", "sandwich")
        self.final_norm = make_norm(cfg) if pre else None
        head = cfg.output_head
        self.head_transform = HeadTransform(cfg) if head and cfg.head_transform else None
        self.lm_head = (nn.Linear(cfg.d_model, cfg.vocab_size, bias=cfg.head_transform)
                        if head else None)
        if cfg.tie_embeddings and self.lm_head is not None:
            self.lm_head.weight = self.tok_emb.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """`gpt2_init` over the n_layers blocks, from torch's global RNG (seed it for
        reproducibility): the residual projections' smaller std keeps the stream's
        variance from growing with depth."""
        gpt2_init(self, lambda name: self.config.n_layers)

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor | None = None,
                cache: KVCache | None = None,
                capture: AttentionCapture | None = None,
                token_types: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                head_mask: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, T) long -> logits (B, T, vocab_size) float32.

        positions (B, T) default to 0..T-1 in every row. With a cache, keys/values are
        written at slot == position and each query attends to slots 0..its position, over
        exactly the cache given (pass a view cut to the length needed). Values are not
        checked here (that would read tensors back): token ids must lie in the vocabulary,
        positions in the position table and the cache; the engine checks them.
        token_types (B, T) pick BERT's segment embeddings (default 0); attention_mask
        (B, T), 1 = real token, hides padding keys (rows of a padded batch).
        head_mask (n_layers, n_heads) scales each head's output (`AttentionInputs`).
        """
        return self.logits(self.hidden(tokens, positions, cache, capture, token_types,
                                       attention_mask, head_mask))

    def hidden(self, tokens: torch.Tensor, positions: torch.Tensor | None = None,
               cache: KVCache | None = None,
               capture: AttentionCapture | None = None,
               token_types: torch.Tensor | None = None,
               attention_mask: torch.Tensor | None = None,
               head_mask: torch.Tensor | None = None,
               embeds: torch.Tensor | None = None,
               after_block: Callable[[int, torch.Tensor], torch.Tensor] | None = None
               ) -> torch.Tensor:
        """The final hidden states (B, T, d_model), after the final norm, before the head.

        Split from `forward` so callers that need logits at a few positions only (the
        engine's prefill, which samples from the last one) or no logits at all (sentence
        embeddings) skip the rest of the (large) output projection. `embeds` (B, T, d),
        when given, replace `token_embeddings(tokens)` (a vision model splices image
        features into them); positions are still added to them. `after_block(layer, x)`
        maps the residual stream after each block (a vision model's gated cross-attention).
        """
        positions = self._check_inputs(tokens, positions, cache)
        check_encoder_inputs(tokens, token_types, attention_mask, self.config.type_vocab_size)
        x = self.token_embeddings(tokens) if embeds is None else embeds  # (B, T, d)
        if self.pos_emb is not None:
            x = x + self.pos_emb(positions)
        elif self.config.positions == "sinusoidal":
            x = x + self.pos_table[positions].to(x.dtype)
        if self.type_emb is not None:
            x = x + self.type_emb(torch.zeros_like(tokens) if token_types is None
                                  else token_types)
        if self.embed_norm is not None:
            x = self.embed_norm(x)
        x = self.drop(x)
        inputs = self._attention_inputs(positions, cache, capture)
        if attention_mask is not None:
            inputs = with_padding(inputs, attention_mask)
        if head_mask is not None:
            inputs = with_head_mask(inputs, head_mask, self.config)
        for block in self.blocks:
            x = block(x, inputs)                                       # (B, T, d)
            if after_block is not None:
                x = after_block(block.layer, x)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return x

    def token_embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) -> their table rows (B, T, d_model), times sqrt(d_model) with
        embed_scale (Gemma; rounded to the activation dtype)."""
        x = self.tok_emb(tokens)
        if self.config.embed_scale:
            x = x * torch.tensor(self.config.d_model ** 0.5, dtype=x.dtype)
        return x

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Output head: hidden (..., d_model) -> logits (..., vocab_size) float32."""
        if self.lm_head is None:
            raise ParrotError("This model has no output head (it was loaded for its hidden "
                              "states only, e.g. a BertModel); it cannot predict tokens.")
        if self.head_transform is not None:
            hidden = self.head_transform(hidden)
        return self.lm_head(hidden).float()

    def _check_inputs(self, tokens: torch.Tensor, positions: torch.Tensor | None,
                      cache: KVCache | None) -> torch.Tensor:
        """Validate shapes (no values: nothing is read back); return the positions (B, T)."""
        if tokens.dim() != 2 or tokens.dtype not in (torch.long, torch.int32):
            raise ParrotError(f"Tokens must be a (batch, time) integer tensor, got shape "
                              f"{tuple(tokens.shape)} of {tokens.dtype}.")
        B, T = tokens.shape
        if T > self.config.context_length:
            raise ParrotError(f"The input has {T} tokens but the model's context length is "
                              f"{self.config.context_length}; shorten the input.")
        if positions is None:
            positions = torch.arange(T, device=tokens.device).expand(B, T)
        elif positions.shape != tokens.shape:
            raise ParrotError(f"positions must have the tokens' shape {tuple(tokens.shape)}, "
                              f"got {tuple(positions.shape)}.")
        if cache is not None and cache.batch_size != B:
            raise ParrotError(f"The KV cache holds {cache.batch_size} rows but the input has "
                              f"{B}; pass cache.rows(start, stop) for a subset.")
        return positions

    def _attention_inputs(self, positions: torch.Tensor, cache: KVCache | None,
                          capture: AttentionCapture | None) -> AttentionInputs:
        """Build the rotary angles, mask and ALiBi bias shared by every layer."""
        cfg = self.config
        rope = (rope_lookup(self.rope_cos, self.rope_sin, positions)
                if cfg.positions == "rope" else None)
        slopes = self.alibi_slopes if cfg.positions == "alibi" else None
        inputs = attention_inputs(positions, rope, cache, capture, cfg.causal, slopes)
        if cfg.sliding_window is not None:
            inputs.local = self._sliding_inputs(inputs)
        return inputs

    def _sliding_inputs(self, inputs: AttentionInputs) -> AttentionInputs:
        """The sliding layers' variant: RoPE at rope_local_theta and a window mask.

        Without a cache the window compares this call's token indices, like the causal
        mask; a call no longer than the window needs no mask beyond the causal one.
        """
        cfg, positions = self.config, inputs.positions
        rope = inputs.rope
        if cfg.positions == "rope" and cfg.rope_local_theta is not None:
            rope = rope_lookup(self.rope_local_cos, self.rope_local_sin, positions)
        if inputs.cache is None and positions.shape[1] <= cfg.sliding_window:
            return dataclasses.replace(inputs, rope=rope)
        k_pos = torch.arange(inputs.kv_len, device=positions.device)  # slots, or token indices
        q_pos = positions if inputs.cache is not None else k_pos[None]
        mask = causal_mask(q_pos, k_pos, cfg.sliding_window)
        return dataclasses.replace(inputs, rope=rope, mask=mask, is_causal=False,
                                   window=cfg.sliding_window)

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Trainable parameters, each shared tensor counted once.

        exclude_embeddings drops the token embedding, a learned position table and an
        untied output head (Kaplan et al.'s non-embedding count N).
        """
        total = sum(p.numel() for p in self.parameters())
        if exclude_embeddings:
            head = None if self.config.tie_embeddings else self.lm_head
            tables = [self.tok_emb, self.pos_emb, head]
            total -= sum(t.weight.numel() for t in tables if t is not None)
        return total

    def flops_per_token(self) -> int:
        """Forward FLOPs per token at full context (one multiply-add = 2 FLOPs):

            2 * N  +  4 * n_layers * context_length * d_attn  +  2 * d_model * vocab_size

        N = non-embedding parameters (every weight is used once per token); the attention
        term counts q.k scores and the weighted sum of values over the full context, with
        d_attn = n_heads * head_dim (Kaplan et al. 2020 count only the scores, 2 instead of
        4; Chinchilla and PaLM count both); the last term is the output head's logits.
        Norms, softmax and activations are ignored. Training costs about 3x this.
        """
        cfg = self.config
        d_attn = cfg.n_heads * cfg.head_size
        attention = 4 * cfg.n_layers * cfg.context_length * d_attn
        logits = 2 * cfg.d_model * cfg.vocab_size
        return 2 * self.num_parameters(exclude_embeddings=True) + attention + logits

