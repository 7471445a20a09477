"""What every Hugging Face family converter shares: reading a folder's JSON and tensors,
the common tail of a load, and writing a folder.

`hf.py` (Llama, Qwen2, GPT-2, Gemma 3) dispatches to `hf_bart.py`, `hf_bert.py` and
`hf_moe.py` by `model_type`; all four import this module, and it imports none of them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from parrot.errors import ParrotError
from parrot.hub.gguf_model import ModelInfo, instantiate
from parrot.model import ModelConfig, Transformer
from parrot.tokenizer import Tokenizer
from parrot.tokenizer.hf_json import MALFORMED, read_json_file
from parrot.utils.atomic import atomic_path, atomic_write_json
from parrot.utils.safetensors_io import read_tensors


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in `path`; ParrotError if it is unreadable or not an object."""
    data = read_json_file(path, "JSON file")
    if not isinstance(data, dict):
        raise ParrotError(f"{path} must hold a JSON object.")
    return data


def read_safetensors(root: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a folder's *.safetensors files (sharded checkpoints included)."""
    tensors: dict[str, torch.Tensor] = {}
    for file in sorted(root.glob("*.safetensors")):
        tensors.update(read_tensors(file))
    return tensors


def config_from_hf(from_hf: Callable[..., ModelConfig], config: dict[str, Any], root: Path,
                   **kwargs: Any) -> ModelConfig:
    """`from_hf(config, **kwargs)`, with a missing key reported as the user's file's fault."""
    try:
        return from_hf(config, **kwargs)
    except KeyError as err:
        raise ParrotError(f"{root / 'config.json'} lacks the key {err.args[0]!r}.") from None
    except MALFORMED as err:  # a string where a number belongs, a list for a dict, ...
        raise ParrotError(f"{root / 'config.json'} has a value of the wrong kind "
                          f"({type(err).__name__}: {str(err)[:120]}).") from None


def llama_layout_from_hf(c: dict[str, Any], default_theta: float = 10000.0,
                         **fields: Any) -> ModelConfig:
    """The ModelConfig of a Llama-layout config.json (RoPE, RMSNorm, SwiGLU, no biases),
    shared by Llama, Qwen2 and the mixtures of experts; `fields` override or add fields."""
    n_heads, d = c["num_attention_heads"], c["hidden_size"]
    head_dim = c.get("head_dim") or d // n_heads
    theta = c.get("rope_theta") or (c.get("rope_parameters") or {}).get("rope_theta",
                                                                          default_theta)
    layout = dict(
        vocab_size=c["vocab_size"], context_length=c.get("max_position_embeddings", 2048),
        d_model=d, n_layers=c["num_hidden_layers"], n_heads=n_heads,
        n_kv_heads=c.get("num_key_value_heads") or n_heads,
        head_dim=None if head_dim * n_heads == d else head_dim,
        d_ff=c.get("intermediate_size"), positions="rope", rope_theta=float(theta),
        norm="rmsnorm", norm_eps=float(c.get("rms_norm_eps", 1e-6)), mlp="swiglu",
        bias=False, tie_embeddings=bool(c.get("tie_word_embeddings", False)),
    )
    return ModelConfig(**{**layout, **fields})


def llama_layout_to_hf(cfg: ModelConfig) -> dict[str, Any]:
    """The config.json keys `llama_layout_from_hf` reads, for `cfg`."""
    return {
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model,
        "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.kv_heads, "head_dim": cfg.head_size,
        "max_position_embeddings": cfg.context_length, "rope_theta": cfg.rope_theta,
        "rms_norm_eps": cfg.norm_eps, "hidden_act": "silu",
        "tie_word_embeddings": cfg.tie_embeddings, "torch_dtype": "float32",
    }


def finish_loading(cfg: ModelConfig, state: dict[str, torch.Tensor], root: Path, family: str,
                   device: str | torch.device) -> tuple[Transformer, Tokenizer, ModelInfo]:
    """(model, tokenizer, info) from a folder's canonical state dict: ties the head to the
    embedding if the config says so, and reads the tokenizer and chat template."""
    model = instantiate(cfg, state, str(root)).to(device)
    tokenizer = Tokenizer.load(root)
    config_path = root / "tokenizer_config.json"
    template = read_json(config_path).get("chat_template") if config_path.is_file() else None
    eos = () if tokenizer.eos_id is None else (tokenizer.eos_id,)
    info = ModelInfo("hf", root, root.name, family, eos_ids=eos, bos_id=tokenizer.bos_id,
                     chat_template=template if isinstance(template, str) else None)
    return model, tokenizer, info


def special_ids(tokenizer: Tokenizer) -> dict[str, int]:
    """config.json's bos_token_id and eos_token_id (those the tokenizer has)."""
    ids = {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id}
    return {k: v for k, v in ids.items() if v is not None}


def tokenizer_config(tokenizer: Tokenizer, meta: ModelInfo | None) -> dict[str, Any]:
    """tokenizer_config.json: the fast tokenizer class, bos/eos names and the chat template."""
    names = {i: s for s, i in tokenizer.special_tokens.items()}
    config: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast"}
    for key, i in (("bos_token", tokenizer.bos_id), ("eos_token", tokenizer.eos_id)):
        if i is not None and i in names:
            config[key] = names[i]
    if meta is not None and meta.chat_template:
        config["chat_template"] = meta.chat_template
    return config


def export_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's fp32 CPU tensors for writing, without a head tied to the embedding."""
    state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_embeddings:
        state.pop("lm_head.weight", None)
    return state


def write_folder(out: str | Path, hf_config: dict[str, Any], state: dict[str, torch.Tensor],
                 tokenizer: Any, tok_config: dict[str, Any] | None = None) -> Path:
    """Write config.json, model.safetensors, the tokenizer and (if given)
    tokenizer_config.json into `out`, each atomically; returns the folder."""
    from safetensors.torch import save_file

    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(root / "config.json", hf_config)
    with atomic_path(root / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    tokenizer.save(root)
    if tok_config is not None:
        atomic_write_json(root / "tokenizer_config.json", tok_config)
    return root
