"""The encoder-decoder transformer (the original Transformer's shape; BART).

    memory = encoder(embed(src))                     bidirectional, source padding masked
    logits = head(decoder(embed(tgt), memory))       causal self-attention + cross-attention

The encoder is a stack of the decoder-only model's own `Block`s run without the causal
mask. Each decoder block puts cross-attention between its self-attention and its MLP:
queries come from the decoder, keys and values from the encoder's output. Cross-attention
has no rotary embedding (the encoder already mixed source positions into the memory).

Generation runs the encoder once per request; `new_cache` projects the memory into every
layer's cross keys/values once and keeps them next to the decoder's self-attention KVCache.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from parrot.errors import ParrotError
from parrot.model.attention import Attention, AttentionInputs, fast_attention
from parrot.model.block import Block
from parrot.model.cache import KVCache
from parrot.model.config import TABLE_POSITIONS, ModelConfig
from parrot.model.mlp import MLP
from parrot.model.norms import make_norm
from parrot.model.positions import rope_lookup, sinusoidal_table
from parrot.model.transformer import Transformer, attention_inputs, gpt2_init, register_rope

NOT_A_DECODER = ("This is an encoder-decoder model: it maps a source text to a target, so it "
                 "needs both; use `parrot seq2seq generate` (or model.encode/decode).")
KV = tuple[torch.Tensor, torch.Tensor]


def padding_mask(src_mask: torch.Tensor | None) -> torch.Tensor | None:
    """Source mask (B, S) bool (True = real token) -> (B, 1, 1, S), broadcast over heads
    and queries; None when nothing is padded."""
    return None if src_mask is None else src_mask.bool()[:, None, None, :]


class CrossAttention(Attention):
    """softmax(q k^T / sqrt(D)) v with q from the decoder, k and v from the encoder memory:
    self-attention's projections, without QK-norm, rotary embedding, cache or attn_scale."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg.replace(qk_norm=False, attn_scale=None))

    def project_memory(self, memory: torch.Tensor) -> KV:
        """memory (B, S, d_model) -> this layer's keys and values, each (B, Hkv, S, D)."""
        return (self._heads(self.k_proj(memory), self.n_kv_heads),
                self._heads(self.v_proj(memory), self.n_kv_heads))

    def forward(self, x: torch.Tensor, kv: KV, mask: torch.Tensor | None) -> torch.Tensor:
        """x (B, T, d_model), kv from `project_memory`, mask (B, 1, 1, S) -> (B, T, d_model)."""
        B, T, _ = x.shape
        q = self._heads(self.q_proj(x), self.n_heads)                    # (B, H, T, D)
        k, v = kv                                                        # (B, Hkv, S, D)
        out = fast_attention(q, k, v, mask, None, False, self.dropout if self.training else 0.0)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, -1))       # (B, T, d_model)


class DecoderBlock(nn.Module):
    """Self-attention, cross-attention and MLP, each with a residual and a norm.

    pre:  x += attn(n1(x));  x += cross(nc(x), mem);  x += mlp(n2(x))
    post: x = n1(x + attn(x));  x = nc(x + cross(x, mem));  x = n2(x + mlp(x))
    """

    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.pre_norm = cfg.norm_placement == "pre"
        self.norm1 = make_norm(cfg)
        self.attn = Attention(cfg)
        self.norm_cross = make_norm(cfg)
        self.cross = CrossAttention(cfg)
        self.norm2 = make_norm(cfg)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, inputs: AttentionInputs, kv: KV,
                src_mask: torch.Tensor | None) -> torch.Tensor:
        """x (B, T, d_model) -> (B, T, d_model); src_mask (B, 1, 1, S) or None."""
        attend = lambda h: self.drop(self.attn(h, inputs, self.layer))  # noqa: E731
        cross = lambda h: self.drop(self.cross(h, kv, src_mask))  # noqa: E731
        feed = lambda h: self.drop(self.mlp(h))  # noqa: E731
        if self.pre_norm:
            x = x + attend(self.norm1(x))
            x = x + cross(self.norm_cross(x))
            return x + feed(self.norm2(x))
        x = self.norm1(x + attend(x))
        x = self.norm_cross(x + cross(x))
        return self.norm2(x + feed(x))


@dataclass
class Seq2SeqCache:
    """What one batch of requests keeps between decode steps.

    self_attn: the decoder's KVCache (slot == target position); cross: per decoder layer,
    the memory's keys and values (B, Hkv, S, D), computed once; src_mask (B, S) or None.
    """

    self_attn: KVCache
    cross: list[KV]
    src_mask: torch.Tensor | None


class EncoderDecoder(nn.Module):
    """`cfg.encoder_layers` encoder blocks and `cfg.n_layers` decoder blocks."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        check_supported(cfg)
        self.config = cfg
        d = cfg.d_model
        self.tok_emb = nn.Embedding(cfg.vocab_size, d)
        self.enc_tok_emb = None if cfg.shared_embeddings else nn.Embedding(cfg.vocab_size, d)
        learned = cfg.positions == "learned"
        self.enc_pos_emb = nn.Embedding(cfg.context_length, d) if learned else None
        self.dec_pos_emb = nn.Embedding(cfg.context_length, d) if learned else None
        if cfg.positions == "sinusoidal":
            table = sinusoidal_table(cfg.context_length, d)
            self.register_buffer("pos_table", table, persistent=False)
        if cfg.positions == "rope":
            register_rope(self, "rope", cfg, cfg.rope_theta)
        self.enc_embed_norm = make_norm(cfg) if cfg.embed_norm else None
        self.dec_embed_norm = make_norm(cfg) if cfg.embed_norm else None
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = nn.ModuleList(Block(cfg, i) for i in range(cfg.encoder_layers))
        self.decoder = nn.ModuleList(DecoderBlock(cfg, i) for i in range(cfg.n_layers))
        # Post-norm blocks already end in a norm; pre-norm stacks need one at the top.
        pre = cfg.norm_placement == "pre"
        self.enc_final_norm = make_norm(cfg) if pre else None
        self.final_norm = make_norm(cfg) if pre else None
        self.lm_head = nn.Linear(d, cfg.vocab_size, bias=cfg.head_bias)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """`gpt2_init`, each residual projection scaled by the depth of its own stack."""
        cfg = self.config
        gpt2_init(self, lambda name: cfg.encoder_layers if name.startswith("encoder.")
                  else cfg.n_layers)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor | None = None,
                src_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher forcing: src (B, S), tgt (B, T) decoder inputs -> logits (B, T, V)."""
        if tgt is None:  # called like a decoder-only model, model(tokens)
            raise ParrotError(NOT_A_DECODER)
        return self.decode(tgt, self.encode(src, src_mask), src_mask)

    def hidden(self, *args: object, **kwargs: object) -> torch.Tensor:
        """Decoder-only callers (engine, perplexity, sampling) reach here: refuse clearly."""
        raise ParrotError(NOT_A_DECODER)

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor | None = None) -> torch.Tensor:
        """src (B, S) ids, src_mask (B, S) bool (True = real) -> memory (B, S, d_model)."""
        self._check_tokens(src, "source")
        B, S = src.shape
        positions = torch.arange(S, device=src.device).expand(B, S)
        table = self.enc_tok_emb if self.enc_tok_emb is not None else self.tok_emb
        x = self._embed(src, positions, table, self.enc_pos_emb, self.enc_embed_norm)
        inputs = attention_inputs(positions, self._rope(positions), None, None, causal=False)
        inputs.mask = padding_mask(src_mask)  # bidirectional: only padding is hidden
        for block in self.encoder:
            x = block(x, inputs)                                           # (B, S, d)
        return self.enc_final_norm(x) if self.enc_final_norm is not None else x

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor | None,
               src_mask: torch.Tensor | None = None, positions: torch.Tensor | None = None,
               cache: Seq2SeqCache | None = None) -> torch.Tensor:
        """tgt (B, T) decoder inputs -> logits (B, T, V) float32.

        Without a cache the cross keys/values come from `memory` (B, S, d_model); with one
        they come from the cache (built by `new_cache` from the same memory) and memory and
        src_mask may be None. positions (B, T) default to 0..T-1 (the cache's slots).
        """
        self._check_tokens(tgt, "target")
        B, T = tgt.shape
        if positions is None:
            positions = torch.arange(T, device=tgt.device).expand(B, T)
        x = self._embed(tgt, positions, self.tok_emb, self.dec_pos_emb, self.dec_embed_norm)
        if cache is not None:
            cross, src_mask = cache.cross, cache.src_mask
        elif memory is not None:
            cross = [block.cross.project_memory(memory) for block in self.decoder]
        else:
            raise ParrotError("decode needs the encoder memory or a cache built from it.")
        # Causal self-attention over this call's tokens or the whole cache given.
        inputs = attention_inputs(positions, self._rope(positions),
                                  None if cache is None else cache.self_attn, None, causal=True)
        mask = padding_mask(src_mask)
        for block, kv in zip(self.decoder, cross, strict=True):
            x = block(x, inputs, kv, mask)                                 # (B, T, d)
        return self.logits(self.final_norm(x) if self.final_norm is not None else x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Output head: hidden (..., d_model) -> logits (..., vocab_size) float32."""
        return self.lm_head(hidden).float()

    def new_cache(self, memory: torch.Tensor, src_mask: torch.Tensor | None, max_len: int,
                  dtype: torch.dtype = torch.float32) -> Seq2SeqCache:
        """A cache for decoding up to `max_len` target tokens against `memory` (B, S, d)."""
        with torch.no_grad():
            cross = [block.cross.project_memory(memory) for block in self.decoder]
        self_attn = KVCache(self.config, memory.shape[0], max_len, dtype, memory.device)
        return Seq2SeqCache(self_attn, cross, src_mask)

    def _embed(self, tokens: torch.Tensor, positions: torch.Tensor, table: nn.Embedding,
               pos_emb: nn.Embedding | None, norm: nn.Module | None) -> torch.Tensor:
        """x = tokens' rows (times sqrt(d) with embed_scale) + absolute positions, normed."""
        x = table(tokens)                                                  # (B, T, d)
        if self.config.embed_scale:
            x = x * math.sqrt(self.config.d_model)
        if pos_emb is not None:
            x = x + pos_emb(positions)
        elif self.config.positions == "sinusoidal":
            x = x + self.pos_table[positions].to(x.dtype)
        if norm is not None:
            x = norm(x)
        return self.drop(x)

    def _rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.config.positions != "rope":
            return None
        return rope_lookup(self.rope_cos, self.rope_sin, positions)

    def _check_tokens(self, tokens: torch.Tensor, what: str) -> None:
        cfg = self.config
        if tokens.dim() != 2 or tokens.dtype not in (torch.long, torch.int32):
            raise ParrotError(f"The {what} must be a (batch, time) integer tensor, got shape "
                              f"{tuple(tokens.shape)} of {tokens.dtype}.")
        if tokens.shape[1] > cfg.context_length and cfg.positions in TABLE_POSITIONS:
            raise ParrotError(f"The {what} has {tokens.shape[1]} tokens but the model's "
                              f"context length is {cfg.context_length}; shorten it.")

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Trainable parameters, shared tensors counted once (optionally without the
        token tables, learned position tables and an untied head)."""
        total = sum(p.numel() for p in self.parameters())
        if exclude_embeddings:
            head = None if self.config.tie_embeddings else self.lm_head
            tables = [self.tok_emb, self.enc_tok_emb, self.enc_pos_emb, self.dec_pos_emb, head]
            total -= sum(t.weight.numel() for t in tables if t is not None)
        return total


def check_supported(cfg: ModelConfig) -> None:
    """ParrotError for switches the encoder-decoder does not implement."""
    if not cfg.is_encoder_decoder:
        raise ParrotError("An EncoderDecoder needs encoder_layers > 0 in its config.")
    unsupported = [
        (cfg.positions == "alibi", "ALiBi positions"),
        (cfg.norm_placement not in ("pre", "post"), f"{cfg.norm_placement} norms"),
        (cfg.is_moe, "mixture-of-experts MLPs"),
        (cfg.type_vocab_size > 0, "token-type embeddings"),
        (cfg.sliding_window is not None, "sliding-window attention"),
    ]
    for bad, what in unsupported:
        if bad:
            raise ParrotError(f"Encoder-decoder models do not support {what}; "
                              "change that setting or set encoder_layers=0.")


def build_model(cfg: ModelConfig) -> nn.Module:
    """The module a config describes: an `EncoderDecoder` when cfg.encoder_layers > 0,
    else a `Transformer` (decoder-only or encoder)."""
    return EncoderDecoder(cfg) if cfg.is_encoder_decoder else Transformer(cfg)
