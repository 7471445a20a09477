"""A GGUF file → a parrot `Transformer` (fp32, dequantized), its tokenizer and facts.

The architecture named in `general.architecture` selects a config builder and a name
table; everything the model needs to know becomes a `ModelConfig` field. The Llama
family (SmolLM2, Llama 2/3, Mistral-style files) and Gemma 3 are mapped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from parrot.errors import ParrotError
from parrot.hub.gguf import GGUFFile, check_supported, read_gguf
from parrot.hub.gguf_tokenizer import GGUFTokenizerInfo, tokenizer_from_gguf
from parrot.hub.naming import GGUF_GEMMA3, GGUF_LLAMA, rename_all, unpermute_rope
from parrot.model import EncoderDecoder, ModelConfig, Transformer
from parrot.tokenizer import Tokenizer

Model = TypeVar("Model", Transformer, EncoderDecoder)


@dataclass(frozen=True)
class ModelInfo:
    """What resolving a model tells the caller besides weights and tokenizer."""

    source: str  # "gguf", "hf", "run", "pulled"
    path: Path
    name: str
    architecture: str
    quantization: str = "none"
    eos_ids: tuple[int, ...] = ()
    bos_id: int | None = None
    add_bos: bool = False
    chat_template: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _f32(value: float) -> float:
    """A float32 metadata value as the decimal it was written from (9.99999975e-06 → 1e-05)."""
    return float(f"{float(value):.7g}")


def _rope_fields(g: GGUFFile, context: int, theta: float, eps: float) -> dict[str, Any]:
    """The ModelConfig fields both GGUF families read alike (RoPE, RMSNorm, no biases);
    `context`, `theta` and `eps` are the defaults when the file leaves them out."""
    scaling = g.arch_value("rope.scaling.type")
    if scaling not in (None, "none"):
        raise ParrotError(f"{g.path.name} uses RoPE scaling {scaling!r}, which parrot does not "
                          "support yet.")
    n_heads = int(g.arch_value("attention.head_count"))
    vocab = len(g.metadata.get("tokenizer.ggml.tokens", [])) or int(g.arch_value("vocab_size"))
    return dict(
        vocab_size=vocab, context_length=int(g.arch_value("context_length", context)),
        d_model=int(g.arch_value("embedding_length")), n_layers=int(g.arch_value("block_count")),
        n_heads=n_heads, n_kv_heads=int(g.arch_value("attention.head_count_kv", n_heads)),
        d_ff=int(g.arch_value("feed_forward_length")), positions="rope",
        rope_theta=_f32(g.arch_value("rope.freq_base", theta)), norm="rmsnorm",
        norm_eps=_f32(g.arch_value("attention.layer_norm_rms_epsilon", eps)), bias=False,
        tie_embeddings="output.weight" not in g.tensors,
    )


def llama_config(g: GGUFFile) -> ModelConfig:
    """ModelConfig for a `llama` GGUF file."""
    fields = _rope_fields(g, 2048, 10000.0, 1e-5)
    d_model, n_heads = fields["d_model"], fields["n_heads"]
    head_dim = int(g.arch_value("attention.key_length", d_model // n_heads))
    return ModelConfig(**fields, mlp="swiglu",
                       head_dim=None if head_dim * n_heads == d_model else head_dim)


# llama.cpp's fixed Gemma 3 facts that the file does not store: every 6th layer is global,
# sliding layers rotate with base 10000, and the 27B model (62 layers) scales scores by
# 1/sqrt(d_model / n_heads) instead of 1/sqrt(head_dim) (its query_pre_attn_scalar).
GEMMA3_SWA_PATTERN = 6
GEMMA3_LOCAL_THETA = 10000.0


def gemma3_config(g: GGUFFile) -> ModelConfig:
    """ModelConfig for a `gemma3` GGUF file (the text model; the 270M and 1B models have no
    RoPE scaling)."""
    fields = _rope_fields(g, 32768, 1_000_000.0, 1e-6)
    window = g.arch_value("attention.sliding_window")
    return ModelConfig(
        **fields, head_dim=int(g.arch_value("attention.key_length", 256)),
        rope_local_theta=GEMMA3_LOCAL_THETA, norm_placement="sandwich", mlp="geglu_tanh",
        embed_scale=True, qk_norm=True, sliding_window=None if window is None else int(window),
        global_every=int(g.arch_value("attention.sliding_window_pattern", GEMMA3_SWA_PATTERN)),
        attn_scale=((fields["d_model"] / fields["n_heads"]) ** -0.5
                    if fields["n_layers"] == 62 else None),
    )


def state_dict(g: GGUFFile, cfg: ModelConfig, table: dict[str, str],
               rope_permuted: bool) -> dict[str, torch.Tensor]:
    """Dequantized weights renamed through `table`, q/k rows back in half-split RoPE order
    when llama.cpp stored them `rope_permuted` (the Llama family). Gemma 3 needs neither
    that (llama.cpp rotates it NeoX-style) nor a norm offset (the file stores 1 + w)."""
    tensors = {name: t.dequantize() for name, t in g.tensors.items()
               if not name.startswith("rope_")}  # precomputed RoPE tables are not weights
    state = rename_all(tensors, table, g.path.name)
    for i in range(cfg.n_layers if rope_permuted else 0):
        q, k = f"blocks.{i}.attn.q_proj.weight", f"blocks.{i}.attn.k_proj.weight"
        state[q] = unpermute_rope(state[q], cfg.n_heads)
        state[k] = unpermute_rope(state[k], cfg.kv_heads)
    return state


# general.architecture → (config builder, name table, whether q/k rows are RoPE-permuted).
ARCHITECTURES: dict[str, tuple[Callable[[GGUFFile], ModelConfig], dict[str, str], bool]] = {
    "llama": (llama_config, GGUF_LLAMA, True),
    "gemma3": (gemma3_config, GGUF_GEMMA3, False),
}


def load_gguf(path: str | Path, device: str | torch.device = "cpu"
              ) -> tuple[Transformer, Tokenizer, ModelInfo]:
    """Read a GGUF file into an fp32 `Transformer` in eval mode, its tokenizer and info."""
    g = _open_supported(path)
    tokenizer, tok_info = tokenizer_from_gguf(g.metadata, g.path.name)
    return _build_model(g).to(device), tokenizer, _info(g, tok_info)


def load_gguf_model(path: str | Path, device: str | torch.device = "cpu") -> Transformer:
    """Only the fp32 `Transformer` of a GGUF file (no tokenizer is built)."""
    return _build_model(_open_supported(path)).to(device)


def _open_supported(path: str | Path) -> GGUFFile:
    """The parsed file; ParrotError for an unknown architecture or tensor type."""
    g = read_gguf(path)
    if g.architecture not in ARCHITECTURES:
        raise ParrotError(f"{g.path.name} holds a {g.architecture!r} model; parrot can load "
                          f"GGUF files of: {', '.join(ARCHITECTURES)}.")
    check_supported(g)
    return g


def _build_model(g: GGUFFile) -> Transformer:
    build_config, table, rope_permuted = ARCHITECTURES[g.architecture]
    cfg = build_config(g)
    return instantiate(cfg, state_dict(g, cfg, table, rope_permuted), g.path.name)


def instantiate(cfg: ModelConfig, state: dict[str, torch.Tensor], where: str,
                model_class: type[Model] = Transformer) -> Model:
    """A `model_class` (Transformer or EncoderDecoder) with `state` loaded strictly (shapes
    and names must all match), in eval mode; a tied head is taken from the embedding."""
    if cfg.tie_embeddings:
        state = {**state, "lm_head.weight": state["tok_emb.weight"]}
    with torch.device("meta"):
        model = model_class(cfg)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1].strip()
        raise ParrotError(f"The weights in {where} do not fit the model they describe "
                          f"({first}).") from None
    if cfg.tie_embeddings:
        model.lm_head.weight = model.tok_emb.weight
    _materialize_buffers(model)
    return model.eval()


def _materialize_buffers(model: Transformer | EncoderDecoder) -> None:
    """Non-persistent buffers (position tables) created on the meta device are rebuilt."""
    if any(b.is_meta for b in model.buffers()):
        fresh = type(model)(model.config)
        for name, buffer in fresh.named_buffers():
            module_name, _, attr = name.rpartition(".")
            module = model.get_submodule(module_name) if module_name else model
            setattr(module, attr, buffer)


def _info(g: GGUFFile, tok: GGUFTokenizerInfo) -> ModelInfo:
    return ModelInfo(
        source="gguf", path=g.path, name=str(g.metadata.get("general.name", g.path.stem)),
        architecture=g.architecture, quantization=g.quantization(), eos_ids=tok.eos_ids,
        bos_id=tok.bos_id, add_bos=tok.add_bos, chat_template=tok.chat_template,
    )
