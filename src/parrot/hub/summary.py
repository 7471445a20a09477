"""What `parrot list` and `parrot show` print about a model, read without loading weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from parrot.errors import ParrotError
from parrot.hub.gguf import GGUFFile, read_gguf
from parrot.hub.gguf_model import ARCHITECTURES
from parrot.hub.gguf_tokenizer import END_OF_GENERATION, TOKEN_CONTROL, TOKEN_USER
from parrot.hub.hf_common import read_json
from parrot.hub.pull import local_path, safetensors_parameters


def gguf_summary(g: GGUFFile) -> dict[str, Any]:
    """Architecture, parameter count, quantization and (when mapped) the parrot config."""
    builder = ARCHITECTURES.get(g.architecture)
    config = builder[0](g).to_dict() if builder else {}
    tokens = g.metadata.get("tokenizer.ggml.tokens", [])
    types = g.metadata.get("tokenizer.ggml.token_type", [])
    specials = {t: i for i, (t, k) in enumerate(zip(tokens, types, strict=False))
                if k in (TOKEN_CONTROL, TOKEN_USER)}
    eos = g.metadata.get("tokenizer.ggml.eos_token_id")
    ends = [i for t, i in specials.items() if t in END_OF_GENERATION]
    return {
        "name": str(g.metadata.get("general.name", g.path.stem)), "path": str(g.path),
        "format": "gguf", "architecture": g.architecture, "quantization": g.quantization(),
        "parameters": g.num_parameters(), "config": config,
        "bos_id": g.metadata.get("tokenizer.ggml.bos_token_id"),
        "eos_ids": list(dict.fromkeys([*([eos] if eos is not None else []), *sorted(ends)])),
        "special_tokens": specials, "chat_template": g.metadata.get("tokenizer.chat_template"),
    }


def describe(spec: str | Path, home: str | Path | None = None) -> dict[str, Any]:
    """The summary of a pulled model (by name, under `home`) or a GGUF file."""
    path = local_path(str(spec), home) if not Path(spec).exists() else Path(spec)
    if path is None:
        raise ParrotError(f"{spec!r} is neither a pulled model nor a GGUF file; "
                          "`parrot list` shows the pulled models.")
    if path.is_dir() and (path / "config.json").is_file():
        summary = hf_summary(path)
        return {**summary, "name": str(spec)} if not Path(spec).exists() else summary
    if path.is_dir() or path.suffix != ".gguf":
        raise ParrotError(f"`parrot show` reads GGUF files, Hugging Face folders and pulled "
                          f"models; {path} is none of them.")
    return gguf_summary(read_gguf(path))


def hf_summary(root: Path) -> dict[str, Any]:
    """The same summary for a Hugging Face folder, read from its JSON files and the
    safetensors headers (tensor shapes only, no weights)."""
    config = read_json(root / "config.json")
    tokenizer = read_json(root / "tokenizer.json") if (root / "tokenizer.json").is_file() else {}
    specials = {t["content"]: t["id"] for t in tokenizer.get("added_tokens", [])
                if t.get("special")}
    tok_config = (read_json(root / "tokenizer_config.json")
                  if (root / "tokenizer_config.json").is_file() else {})
    eos = config.get("eos_token_id")
    return {
        "name": root.name, "path": str(root), "format": "hf",
        "architecture": str(config.get("model_type", "unknown")),
        "quantization": str(config.get("torch_dtype") or config.get("dtype") or "float32"),
        "parameters": safetensors_parameters(root), "config": config,
        "bos_id": config.get("bos_token_id"),
        "eos_ids": eos if isinstance(eos, list) else ([] if eos is None else [eos]),
        "special_tokens": specials, "chat_template": tok_config.get("chat_template"),
    }

