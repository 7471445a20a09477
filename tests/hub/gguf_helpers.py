"""Build small GGUF files locally (with gguf's writer) from a random parrot model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from parrot.hub.naming import GGUF_LLAMA, invert, permute_rope, rename
from parrot.model import ModelConfig, Transformer
from parrot.tokenizer.io import bytes_to_str

TINY_LLAMA = ModelConfig(vocab_size=264, context_length=128, d_model=64, n_layers=2, n_heads=4,
                         n_kv_heads=2, d_ff=96, positions="rope", rope_theta=50000.0,
                         norm="rmsnorm", norm_eps=1e-5, mlp="swiglu", bias=False,
                         tie_embeddings=True)


def tiny_llama(seed: int = 0, cfg: ModelConfig = TINY_LLAMA) -> Transformer:
    torch.manual_seed(seed)
    model = Transformer(cfg).eval()
    with torch.no_grad():  # norm weights away from 1 so a misplaced norm shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def write_llama_gguf(model: Transformer, path: Path, qtype: str = "F32") -> Path:
    """Write `model` as llama.cpp would: GGUF names, permuted q/k rows, a byte tokenizer
    with four merged tokens ("th", "he", "in", "er")... padded to cfg.vocab_size with unused control tokens."""
    import gguf

    cfg = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(cfg.n_layers)
    writer.add_context_length(cfg.context_length)
    writer.add_embedding_length(cfg.d_model)
    writer.add_feed_forward_length(cfg.ff_size)
    writer.add_head_count(cfg.n_heads)
    writer.add_head_count_kv(cfg.kv_heads)
    writer.add_rope_freq_base(cfg.rope_theta)
    writer.add_layer_norm_rms_eps(cfg.norm_eps)
    _add_tokenizer(writer, cfg.vocab_size)
    to_gguf = invert(GGUF_LLAMA)
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and cfg.tie_embeddings:
            continue
        w = tensor.detach().float()
        if name.endswith(("q_proj.weight", "k_proj.weight")):
            heads = cfg.n_heads if "q_proj" in name else cfg.kv_heads
            w = permute_rope(w, heads)
        array = w.numpy()
        if qtype != "F32" and array.ndim == 2:
            packed = gguf.quants.quantize(array, gguf.GGMLQuantizationType[qtype])
            writer.add_tensor(rename(name, to_gguf), packed,
                              raw_dtype=gguf.GGMLQuantizationType[qtype])
        else:
            writer.add_tensor(rename(name, to_gguf), np.ascontiguousarray(array))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _add_tokenizer(writer, vocab_size: int) -> None:
    merges = [("t", "h"), ("h", "e"), ("i", "n"), ("e", "r")]
    tokens = [bytes_to_str(bytes([b])) for b in range(256)]
    tokens += [a + b for a, b in merges]
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens = specials + tokens
    while len(tokens) < vocab_size:
        tokens.append(f"<extra_{len(tokens)}>")
    types = [3 if t in specials or t.startswith("<extra_") else 1 for t in tokens]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges([f"{a} {b}" for a, b in merges])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_chat_template("{{ messages[0]['content'] }}")
