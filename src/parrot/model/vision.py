"""A vision-language model: image patches become vectors in the language model's space.

    patches  = patchify(image)                        (B, N, p*p*C), N = (H/p) * (W/p)
    features = encoder(patch_embed(patches) + pos)    bidirectional blocks, (B, N, d_vision)
    tokens   = projector(features)                    (B, N, d_model): one per image token

Two ways to join them to the language model (`VisionConfig.connection`):

    "splice" (LLaVA)  the prompt holds N image placeholder ids per image; their embeddings
                      are replaced by the N projected patch vectors, and the language model
                      attends over text and patches alike.
    "cross"  (Flamingo) the prompt holds one placeholder per image; after every block, the
                      tokens at and after it attend to the projected patches through
                      cross-attention (the encoder-decoder's), scaled by tanh(gate), gate 0
                      at the start so training begins from the language model unchanged.

The encoder is a configuration of parrot's own `Block` (causal=False, no cache); the
language model is a plain `Transformer`. With no image in the prompt both connections
compute exactly what the language model alone computes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from parrot.errors import ParrotError
from parrot.model.attention import AttentionCapture
from parrot.model.block import Block
from parrot.model.cache import KVCache
from parrot.model.config import ModelConfig
from parrot.model.norms import make_norm
from parrot.model.seq2seq import CrossAttention
from parrot.model.transformer import Transformer, attention_inputs, gpt2_init

CONNECTIONS = ("splice", "cross")


@dataclass(frozen=True)
class VisionConfig:
    """The image side of a vision-language model.

    image_size: images are image_size x image_size RGB after preprocessing (see
    parrot.data.images); patch_size divides it. width, layers, heads, mlp and norm shape
    the encoder; image_token_id is the placeholder's token id in the language model's
    vocabulary; max_images bounds the images one prompt may carry.
    """

    image_size: int = 32
    patch_size: int = 4
    channels: int = 3
    width: int = 96
    layers: int = 2
    heads: int = 4
    mlp: str = "gelu"
    norm: str = "layernorm"
    connection: str = "splice"
    image_token_id: int = 0
    max_images: int = 1

    def __post_init__(self) -> None:
        for key in ("image_size", "patch_size", "channels", "width", "layers", "heads",
                    "max_images"):
            if getattr(self, key) < 1:
                raise ParrotError(f"vision.{key} must be at least 1, got {getattr(self, key)}.")
        if self.image_size % self.patch_size:
            raise ParrotError(f"vision.patch_size ({self.patch_size}) must divide "
                              f"vision.image_size ({self.image_size}).")
        if self.connection not in CONNECTIONS:
            raise ParrotError(f"vision.connection must be one of {', '.join(CONNECTIONS)}, "
                              f"got {self.connection!r}.")
        self.encoder_config()  # width/heads/mlp/norm checked by ModelConfig

    @property
    def n_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def tokens_per_image(self) -> int:
        """Placeholder ids one image takes in the prompt."""
        return self.n_patches if self.connection == "splice" else 1

    def encoder_config(self) -> ModelConfig:
        """The encoder's blocks as a ModelConfig: bidirectional, learned positions (added
        by the encoder itself), no token table or head of its own."""
        return ModelConfig(vocab_size=1, context_length=self.n_patches, d_model=self.width,
                           n_layers=self.layers, n_heads=self.heads, mlp=self.mlp,
                           norm=self.norm, causal=False, positions="none", output_head=False)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> VisionConfig:
        return VisionConfig.from_dict({**self.to_dict(), **changes})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VisionConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ParrotError(f"Unknown vision config key(s) {', '.join(unknown)}; valid "
                              f"keys are: {', '.join(sorted(known))}.")
        return cls(**data)


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, (H/p)(W/p), p*p*C): patches in row-major order, each flattened
    as (row in patch, column in patch, channel), by one reshape and one permute."""
    B, C, H, W = images.shape
    x = images.reshape(B, C, H // patch, patch, W // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(B, (H // patch) * (W // patch), patch * patch * C)


class VisionEncoder(nn.Module):
    """pixels (B, C, H, W) in [0, 1] -> features (B, N, width)."""

    def __init__(self, vc: VisionConfig) -> None:
        super().__init__()
        cfg = vc.encoder_config()
        self.vision_config = vc
        self.patch_embed = nn.Linear(vc.channels * vc.patch_size ** 2, vc.width)
        self.pos_emb = nn.Embedding(vc.n_patches, vc.width)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(vc.layers))
        self.final_norm = make_norm(cfg)

    def forward(self, pixels: torch.Tensor,
                capture: AttentionCapture | None = None) -> torch.Tensor:
        vc = self.vision_config
        expected = (vc.channels, vc.image_size, vc.image_size)
        if pixels.dim() != 4 or tuple(pixels.shape[1:]) != expected:
            raise ParrotError(f"Images must be (batch, {', '.join(map(str, expected))}) "
                              f"tensors, got {tuple(pixels.shape)}.")
        x = self.patch_embed(patchify(2 * pixels - 1, vc.patch_size))  # [0, 1] -> [-1, 1]
        x = x + self.pos_emb.weight                                       # (B, N, width)
        positions = torch.arange(x.shape[1], device=x.device).expand(x.shape[0], -1)
        inputs = attention_inputs(positions, None, None, capture, causal=False)
        for block in self.blocks:
            x = block(x, inputs)
        return self.final_norm(x)


class Projector(nn.Module):
    """LLaVA-1.5's two-layer MLP: d_model-wide GELU between two linear maps."""

    def __init__(self, width: int, d_model: int) -> None:
        super().__init__()
        self.up_proj = nn.Linear(width, d_model)
        self.act = nn.GELU()
        self.down_proj = nn.Linear(d_model, d_model)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act(self.up_proj(features)))


class GatedCross(nn.Module):
    """x + tanh(gate) * where(pos >= start, cross(norm(x), memory), 0): Flamingo's layer."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.norm = make_norm(cfg)
        self.cross = CrossAttention(cfg)
        self.gate = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor],
                sees: torch.Tensor) -> torch.Tensor:
        """x (B, T, d); kv from `cross.project_memory`; sees (B, T, 1): 1 where a token
        comes at or after its row's image."""
        return x + torch.tanh(self.gate) * sees * self.cross(self.norm(x), kv, None)


class VisionLanguageModel(nn.Module):
    """A `Transformer` language model, a `VisionEncoder` and a `Projector` (and, for the
    cross connection, one `GatedCross` per language-model block).

    `config` is the language model's (the engine's KV cache follows it); `vision_config`
    the image side's.
    """

    def __init__(self, cfg: ModelConfig, vc: VisionConfig) -> None:
        super().__init__()
        if cfg.is_encoder_decoder or not cfg.causal:
            raise ParrotError("A vision-language model needs a decoder-only language model.")
        if not 0 <= vc.image_token_id < cfg.vocab_size:
            raise ParrotError(f"vision.image_token_id {vc.image_token_id} is outside the "
                              f"vocabulary of {cfg.vocab_size} ids.")
        self.config, self.vision_config = cfg, vc
        self.lm = Transformer(cfg)
        self.vision = VisionEncoder(vc)
        self.projector = Projector(vc.width, cfg.d_model)
        cross = vc.connection == "cross"
        self.cross = nn.ModuleList(GatedCross(cfg) for _ in range(cfg.n_layers)) if cross else None
        gpt2_init(self.vision, lambda name: vc.layers)
        gpt2_init(self.projector, lambda name: 1)
        if self.cross is not None:
            gpt2_init(self.cross, lambda name: cfg.n_layers)

    def image_features(self, pixels: torch.Tensor,
                       capture: AttentionCapture | None = None) -> torch.Tensor:
        """pixels (n, C, H, W) -> (n, N, d_model): what the language model reads of each."""
        return self.projector(self.vision(pixels, capture))

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor | None = None,
                cache: KVCache | None = None, capture: AttentionCapture | None = None,
                images: torch.Tensor | None = None,
                image_starts: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, T) -> logits (B, T, vocab_size); see `hidden` for the images."""
        return self.lm.logits(self.hidden(tokens, positions, cache, capture, images,
                                          image_starts))

    def hidden(self, tokens: torch.Tensor, positions: torch.Tensor | None = None,
               cache: KVCache | None = None, capture: AttentionCapture | None = None,
               images: torch.Tensor | None = None,
               image_starts: torch.Tensor | None = None) -> torch.Tensor:
        """The language model's final hidden states (B, T, d_model).

        splice: images (n, N, d_model) are projected features, one per placeholder run in
        `tokens`, in reading order (row by row); every placeholder id takes the next
        feature row, so a call may carry part of an image (a prompt's reused prefix holds
        the rest). cross: images (B, N, d_model), one per row, and image_starts (B,) the
        position of each row's placeholder (a row with no image: a position past the end).
        No images: the language model alone, exactly.
        """
        if images is None:
            return self.lm.hidden(tokens, positions, cache, capture)
        if self.cross is None:
            return self.lm.hidden(tokens, positions, cache, capture,
                                  embeds=self.splice(tokens, images))
        if positions is None:
            positions = torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)
        if image_starts is None:
            raise ParrotError("The cross connection needs each row's image position.")
        sees = (positions >= image_starts[:, None])[..., None].to(images.dtype)  # (B, T, 1)
        kv = [layer.cross.project_memory(images) for layer in self.cross]
        return self.lm.hidden(tokens, positions, cache, capture,
                              after_block=lambda i, x: self.cross[i](x, kv[i], sees))

    def splice(self, tokens: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Token embeddings (B, T, d) with each placeholder's row replaced, in reading
        order, by the next row of `features` (..., d) (LLaVA's merge)."""
        embeds = self.lm.token_embeddings(tokens)
        slots = tokens == self.vision_config.image_token_id
        rows = features.reshape(-1, features.shape[-1])
        if int(slots.sum()) != rows.shape[0]:
            raise ParrotError(f"The prompt has {int(slots.sum())} image placeholder tokens "
                              f"but {rows.shape[0]} image features were given.")
        return embeds.masked_scatter(slots[..., None], rows.to(embeds.dtype))

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Every parameter (image side included), each shared tensor once."""
        total = sum(p.numel() for p in self.parameters())
        if exclude_embeddings:
            total -= self.lm.num_parameters() - self.lm.num_parameters(True)
        return total
