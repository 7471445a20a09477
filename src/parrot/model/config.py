"""The model configuration: one frozen dataclass whose fields are the architecture's switches.

Every variant of the model (GPT-2, Llama, encoder-only, ...) is a value of `ModelConfig`,
never a subclass. Invalid values raise `ParrotError` with a sentence saying what to change.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any

from parrot.errors import ParrotError

POSITIONS = ("learned", "sinusoidal", "rope", "alibi", "none")
NORMS = ("layernorm", "rmsnorm")
# "sandwich" (Gemma): pre-norm plus a norm on each sublayer's output before the residual add.
NORM_PLACEMENTS = ("pre", "post", "sandwich")
MOE_BALANCE = ("none", "aux_loss", "loss_free")
# Plain MLPs apply one activation; gated ones (GLU family) multiply act(gate(x)) * up(x).
PLAIN_MLPS = ("relu", "gelu", "gelu_tanh")
GATED_MLPS = ("swiglu", "geglu", "geglu_tanh")
MLPS = PLAIN_MLPS + GATED_MLPS
# Positions that index a table of `context_length` rows cannot go past it.
TABLE_POSITIONS = ("learned", "sinusoidal")


@dataclass(frozen=True)
class ModelConfig:
    """The transformer's architecture. `None` fields take the derived defaults below.

    n_kv_heads: None = n_heads (multi-head); 1 = multi-query; between = grouped-query.
    head_dim: None = d_model // n_heads.
    d_ff: None = 4 * d_model for plain MLPs; for gated MLPs 8/3 * d_model rounded up to a
        multiple of 64, which keeps the parameter count of a 4x plain MLP (three matrices).
    qkv_bias: None = bias; True/False gives the query/key/value projections their own
        setting (Qwen2 has biases there and nowhere else).

    Gemma-style switches: embed_scale multiplies token embeddings by sqrt(d_model);
    qk_norm applies RMSNorm to each query and key head; sliding_window limits a layer's
    keys to the last W positions, and with global_every = N every N-th layer (1-based)
    stays global (0: all layers slide); rope_local_theta is the RoPE base of sliding layers
    (None = rope_theta); attn_scale multiplies q.k scores (None = 1/sqrt(head_size); Gemma 3
    uses query_pre_attn_scalar^-0.5).

    Mixture of experts (n_experts > 0 replaces every MLP): each token goes to
    experts_per_token of n_experts experts of width expert_d_ff (None = ff_size), plus
    shared_experts always-on experts of width shared_d_ff; moe_renormalize rescales the
    chosen probabilities to sum to 1; moe_balance picks the balancing method, with
    moe_aux_coef (alpha of the auxiliary loss) and moe_bias_rate (u of the loss-free bias);
    shared_expert_gate scales the shared experts' output by sigmoid(w . x) (Qwen2-MoE).

    Encoder-only (BERT): type_vocab_size > 0 adds token-type embeddings; embed_norm puts a
    norm right after the embeddings; head_transform inserts BERT's dense + act + norm
    before the output head (and gives the head a bias, as BERT's decoder has one);
    output_head=False builds no output head at all (a BertModel read for its hidden
    states: `logits` then raises). Encoder-decoder: encoder_layers > 0 adds a bidirectional
    encoder of that depth, and the n_layers blocks become a decoder with cross-attention;
    shared_embeddings lets encoder and decoder read one token table (False: the encoder
    gets its own); head_bias adds a bias to the output logits (BART's final_logits_bias).
    """

    vocab_size: int = 256
    context_length: int = 64
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int | None = None
    head_dim: int | None = None
    d_ff: int | None = None
    positions: str = "learned"
    rope_theta: float = 10000.0
    norm: str = "layernorm"
    norm_placement: str = "pre"
    norm_eps: float = 1e-5
    mlp: str = "gelu"
    bias: bool = True
    qkv_bias: bool | None = None
    dropout: float = 0.0
    tie_embeddings: bool = True
    causal: bool = True
    # Gemma 3
    embed_scale: bool = False
    qk_norm: bool = False
    sliding_window: int | None = None
    global_every: int = 0
    rope_local_theta: float | None = None
    attn_scale: float | None = None
    # Mixture of experts
    n_experts: int = 0
    experts_per_token: int = 2
    expert_d_ff: int | None = None
    shared_experts: int = 0
    shared_d_ff: int | None = None
    moe_renormalize: bool = True
    moe_balance: str = "none"
    moe_aux_coef: float = 0.01
    moe_bias_rate: float = 0.001
    shared_expert_gate: bool = False
    # Encoder-only and encoder-decoder
    type_vocab_size: int = 0
    embed_norm: bool = False
    head_transform: bool = False
    output_head: bool = True
    encoder_layers: int = 0
    shared_embeddings: bool = True
    head_bias: bool = False

    def __post_init__(self) -> None:
        for key in _FIELD_TYPES:  # normalise (e.g. an int rope_theta becomes a float)
            object.__setattr__(self, key, _coerce(key, getattr(self, key)))
        _validate(self)

    # Derived sizes: read these, not the raw optional fields.
    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads if self.n_kv_heads is not None else self.n_heads

    @property
    def head_size(self) -> int:
        return self.head_dim if self.head_dim is not None else self.d_model // self.n_heads

    @property
    def ff_size(self) -> int:
        if self.d_ff is not None:
            return self.d_ff
        if self.gated:
            return 64 * math.ceil(8 * self.d_model / 3 / 64)
        return 4 * self.d_model

    @property
    def has_qkv_bias(self) -> bool:
        return self.bias if self.qkv_bias is None else self.qkv_bias

    @property
    def gated(self) -> bool:
        return self.mlp in GATED_MLPS

    @property
    def is_moe(self) -> bool:
        return self.n_experts > 0

    @property
    def is_encoder_decoder(self) -> bool:
        return self.encoder_layers > 0

    def is_sliding(self, layer: int) -> bool:
        """Whether layer `layer` (0-based) attends through the sliding window."""
        if self.sliding_window is None:
            return False
        return self.global_every == 0 or (layer + 1) % self.global_every != 0

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-ready dict (the raw fields, not the derived sizes)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build a config from a dict; unknown keys and wrong types raise ParrotError."""
        if not isinstance(data, dict):
            raise ParrotError(f"A model config must be a mapping of field names to values, "
                              f"got {type(data).__name__}.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ParrotError(f"Unknown model config key(s) {', '.join(unknown)}; "
                              f"valid keys are: {', '.join(sorted(known))}.")
        return cls(**{key: _coerce(key, value) for key, value in data.items()})

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed, validated like `from_dict`."""
        return ModelConfig.from_dict({**self.to_dict(), **changes})


# Each field's type, read from its annotation: "int", "float | None", ...
_FIELD_TYPES = {f.name: f.type for f in fields(ModelConfig)}
_BASES = {"int": int, "float": float, "str": str, "bool": bool}


def _coerce(key: str, value: Any) -> Any:
    """Check a value's type for field `key`; ints are accepted where floats are expected."""
    name, _, rest = _FIELD_TYPES[key].partition(" | ")
    base, optional = _BASES[name], rest == "None"
    if value is None and optional:
        return None
    ok = isinstance(value, base) and not (base is int and isinstance(value, bool))
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        expected = base.__name__ + (" or null" if optional else "")
        raise ParrotError(f"Model config key {key!r} must be {expected}, "
                          f"got {value!r} ({type(value).__name__}).")
    return value


def _validate(cfg: ModelConfig) -> None:
    """Raise ParrotError for the first impossible value in `cfg`."""
    for key in ("vocab_size", "context_length", "d_model", "n_layers", "n_heads"):
        _require(getattr(cfg, key) > 0, f"Model config {key} must be positive, "
                                       f"got {getattr(cfg, key)}.")
    for key in ("n_kv_heads", "head_dim", "d_ff", "sliding_window", "expert_d_ff", "shared_d_ff",
                "rope_local_theta", "attn_scale"):
        value = getattr(cfg, key)
        _require(value is None or value > 0, f"Model config {key} must be positive or null, "
                                              f"got {value}.")
    _check_choice("positions", cfg.positions, POSITIONS)
    _check_choice("norm", cfg.norm, NORMS)
    _check_choice("norm_placement", cfg.norm_placement, NORM_PLACEMENTS)
    _check_choice("mlp", cfg.mlp, MLPS)
    _require(cfg.head_dim is not None or cfg.d_model % cfg.n_heads == 0,
             f"d_model ({cfg.d_model}) must be divisible by n_heads ({cfg.n_heads}); "
             "change one of them or set head_dim.")
    _require(cfg.n_heads % cfg.kv_heads == 0,
             f"n_heads ({cfg.n_heads}) must be a multiple of n_kv_heads ({cfg.kv_heads}).")
    _require(cfg.positions != "rope" or cfg.head_size % 2 == 0,
             f"RoPE needs an even head size, got {cfg.head_size}.")
    _require(cfg.positions != "sinusoidal" or cfg.d_model % 2 == 0,
             f"Sinusoidal positions need an even d_model, got {cfg.d_model}.")
    _require(cfg.rope_theta > 0, f"rope_theta must be positive, got {cfg.rope_theta}.")
    _require(cfg.norm_eps > 0, f"norm_eps must be positive, got {cfg.norm_eps}.")
    _require(0.0 <= cfg.dropout < 1.0, f"dropout must be in [0, 1), got {cfg.dropout}.")
    _validate_extras(cfg)


def _validate_extras(cfg: ModelConfig) -> None:
    """The Gemma, mixture-of-experts and encoder(-decoder) switches."""
    for key in ("global_every", "n_experts", "shared_experts", "type_vocab_size",
                "encoder_layers"):
        _require(getattr(cfg, key) >= 0, f"Model config {key} must be 0 or more, "
                                         f"got {getattr(cfg, key)}.")
    _require(cfg.sliding_window is None or cfg.causal,
             "sliding_window needs a causal model (causal=true); remove it for an encoder.")
    _check_choice("moe_balance", cfg.moe_balance, MOE_BALANCE)
    _check_scale(cfg)
    if cfg.is_moe:
        _require(1 <= cfg.experts_per_token <= cfg.n_experts,
                 f"experts_per_token ({cfg.experts_per_token}) must lie between 1 and "
                 f"n_experts ({cfg.n_experts}); lower it or add experts.")
    _require(cfg.moe_aux_coef >= 0 and cfg.moe_bias_rate >= 0,
             "moe_aux_coef and moe_bias_rate must be 0 or more.")


# The largest model parrot builds: beyond these a config.json is damaged or hostile (a
# header claiming 2^31 layers must fail at once, not after minutes of building).
MAX_LAYERS, MAX_EXPERTS, MAX_WIDTH = 1024, 4096, 1 << 24
MAX_POSITION_ENTRIES = 1 << 27  # context_length x head size: the RoPE tables stay < 1 GiB


def _check_scale(cfg: ModelConfig) -> None:
    _require(cfg.n_layers + cfg.encoder_layers <= MAX_LAYERS,
             f"Model config asks for {cfg.n_layers + cfg.encoder_layers} layers; parrot builds "
             f"at most {MAX_LAYERS}.")
    _require(cfg.n_experts <= MAX_EXPERTS, f"Model config asks for {cfg.n_experts} experts; "
                                           f"parrot builds at most {MAX_EXPERTS}.")
    for key in ("vocab_size", "d_model", "d_ff", "head_dim", "expert_d_ff", "shared_d_ff",
                "n_heads", "type_vocab_size"):
        value = getattr(cfg, key) or 0
        _require(value <= MAX_WIDTH, f"Model config {key}={value} is beyond the {MAX_WIDTH:,} "
                                     "parrot builds; the config is damaged.")
    _require(cfg.context_length * cfg.head_size <= MAX_POSITION_ENTRIES,
             f"Model config context_length={cfg.context_length} with head size "
             f"{cfg.head_size} needs position tables over 1 GiB; lower context_length.")


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    _require(value in choices, f"Model config {key} must be one of {', '.join(choices)}; "
                               f"got {value!r}.")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ParrotError(message)
