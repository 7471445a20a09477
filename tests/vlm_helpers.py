"""A tiny random-weight vision-language run directory, and pictures, for the tests."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import torch

from parrot.data.images import png_bytes
from parrot.data.scenes import scenes
from parrot.model import ModelConfig, VisionConfig, VisionLanguageModel
from parrot.rundir import save_weights, write_config
from parrot.training.vlm_data import train_tokenizer

LM = dict(context_length=160, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2,
          positions="rope", norm="rmsnorm", mlp="swiglu", bias=False)


def tiny_tokenizer():
    return train_tokenizer(scenes("train", 40, seed=5), 320)


def tiny_vlm(tokenizer, connection: str = "splice", seed: int = 0, **vision) -> VisionLanguageModel:
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=tokenizer.vocab_size, **LM)
    vc = VisionConfig(image_size=16, patch_size=4, width=32, layers=2, heads=2,
                      connection=connection,
                      image_token_id=tokenizer.special_tokens["<image>"], **vision)
    model = VisionLanguageModel(cfg, vc)
    if model.cross is not None:  # open the gates, so the pictures change the answers
        for layer in model.cross:
            layer.gate.data.fill_(0.5)
    return model.eval()


def make_vlm_run(path: Path, connection: str = "splice", seed: int = 0) -> Path:
    """A run directory (config.json with model + vision, chat template, weights)."""
    tokenizer = tiny_tokenizer()
    model = tiny_vlm(tokenizer, connection, seed)
    path.mkdir(parents=True, exist_ok=True)
    write_config(path, {"model": model.config.to_dict(),
                        "vision": model.vision_config.to_dict(), "chat_template": "chatml"})
    save_weights(path, model)
    tokenizer.save(path)
    return path


def scene_png(path: Path, index: int = 0) -> Path:
    path.write_bytes(png_bytes(scenes("test", index + 1, seed=3)[index].pixels))
    return path


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but whose pixel data is one empty block:
    what a decompression bomb looks like before anything is decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) +
            chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
