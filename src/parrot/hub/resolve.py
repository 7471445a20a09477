"""One answer to "which model does MODEL mean?" for every command that takes one.

MODEL may be a pulled name (`smollm2-135m-instruct`), a name the registry can pull, a GGUF
file, a Hugging Face folder (config.json + *.safetensors + tokenizer.json) or a parrot run
directory. Checked in that order of specificity: existing paths first, then names.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from parrot.adapt.adapter_dir import is_adapter_dir, read_adapter_config
from parrot.adapt.lora import load_adapter
from parrot.errors import ParrotError
from parrot.hub.gguf_model import ModelInfo, load_gguf
from parrot.hub.hf import is_hf_dir, load_hf
from parrot.hub.pull import ensure_pulled, local_path
from parrot.hub.registry import REGISTRY
from parrot.model import Transformer
from parrot.rundir import is_reward_dir, is_run_dir, load_model, read_config
from parrot.tokenizer import Tokenizer


def resolve_model(spec: str | Path, device: str | torch.device = "cpu", *,
                  home: str | Path | None = None, pull_missing: bool = False,
                  log: Callable[[str], None] | None = None
                  ) -> tuple[Transformer, Tokenizer, ModelInfo]:
    """(model in eval mode, tokenizer, info) for a MODEL argument.

    A registry name that is not pulled yet is pulled when `pull_missing`, else a
    ParrotError says how to pull it.
    """
    model, tokenizer, info = _resolve(spec, device, home, pull_missing, log)
    if info.chat_template and not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = info.chat_template
    # Whether plain-text prompts start with BOS (GGUF add_bos_token; Gemma needs it, its
    # output degenerates without), travelling with the tokenizer like the chat template.
    if info.add_bos and not getattr(tokenizer, "add_bos", False):
        tokenizer.add_bos = True
    return model, tokenizer, info


def _resolve(spec: str | Path, device: str | torch.device, home: str | Path | None,
             pull_missing: bool, log: Callable[[str], None] | None
             ) -> tuple[Transformer, Tokenizer, ModelInfo]:
    path = Path(spec)
    if path.is_file():
        if path.suffix != ".gguf" and path.read_bytes()[:4] != b"GGUF":
            raise ParrotError(f"{path} is a file but not a GGUF model; give a .gguf file, a "
                              "model folder or a pulled model name.")
        return load_gguf(path, device)
    if path.is_dir():
        return _load_dir(path, device, home)
    stored = local_path(str(spec), home)
    if stored is None and str(spec) in REGISTRY:
        if not pull_missing:
            raise ParrotError(f"{spec} is not pulled yet; run `parrot pull {spec}` first.")
        stored = ensure_pulled(str(spec), home, log=log)
    if stored is None:
        raise ParrotError(f"No model {str(spec)!r}: not a file, folder or pulled model name "
                          f"(pullable: {', '.join(sorted(REGISTRY))}).")
    loader = load_hf if stored.is_dir() else load_gguf  # directory models are HF folders
    model, tokenizer, info = loader(stored, device)
    return model, tokenizer, ModelInfo(**{**info.__dict__, "source": "pulled",
                                          "name": str(spec)})


def _load_dir(path: Path, device: str | torch.device, home: str | Path | None
              ) -> tuple[Transformer, Tokenizer, ModelInfo]:
    if is_reward_dir(path):
        raise ParrotError(f"{path} is a reward model: it scores answers (parrot reward score "
                          f"{path} --data PAIRS.jsonl) and does not generate text; give a "
                          "language model.")
    if is_adapter_dir(path):  # a LoRA run: its base (any MODEL), then the adapter on top
        base = read_adapter_config(path)["base"]
        model, tokenizer, info = resolve_model(base, device, home=home)
        return load_adapter(model, path).eval(), tokenizer, info
    if is_run_dir(path):
        model, tokenizer, config = load_model(path, device=device)
        eos = () if tokenizer.eos_id is None else (tokenizer.eos_id,)
        template = read_config(path).get("chat_template")  # a run trained on chat turns
        return model, tokenizer, ModelInfo("run", path, path.name, "parrot", eos_ids=eos,
                                           bos_id=tokenizer.bos_id, chat_template=template)
    if is_hf_dir(path):
        return load_hf(path, device)
    raise ParrotError(f"{path} is neither a parrot run directory nor a Hugging Face model "
                      "folder (config.json + *.safetensors + tokenizer.json).")
