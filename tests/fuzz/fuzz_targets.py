"""Fuzz targets: parrot's loaders fed mutated files, and the rules every input must keep.

A target takes bytes, writes them where its loader expects a file and calls the loader
users run (parse_gguf, the safetensors readers, run-directory and Hugging Face config
loading, load_tokenizer for BPE / WordPiece / SentencePiece files, chat rendering, SFT
JSONL loading). The rules (`run_one`): only a ParrotError may escape, no input may take
10 s, and no input may make the process allocate more than 1 GB (`rss_growth`).

Mutators are structure-aware: JSON inputs are parsed, a node is replaced by an awkward
value (2^60, -1, NaN, a deep nest, a wrong type) and dumped again; binary inputs get
their little-endian counts and sizes overwritten with 2^60, 2^64 - 1 and friends, beside
plain byte flips, insertions and deletions. `benchmarks/fuzz_loaders.py` runs them for
long (and under atheris when it is installed); tests/fuzz runs a fixed small budget.
"""

from __future__ import annotations

import json
import random
import resource
import signal
import struct
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fuzz_media import load_image_file, pdf_seed, png_seed, read_document

from parrot.errors import ParrotError

LIMIT_S = 10.0
LIMIT_GROWTH_BYTES = 1 << 30
HUGE = [2**60, 2**63 - 1, 2**64 - 1, 2**32, 2**31, -1, 0, 1, 255, 65535]


class RuleBroken(Exception):
    """An input broke a rule: another exception escaped or it ran too long."""


def rss_bytes() -> int:
    """Peak resident memory of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ---- seeds --------------------------------------------------------------------------


def gguf_seed() -> bytes:
    """A small valid GGUF file: metadata of every kind and two F32 tensors."""
    import gguf

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "seed.gguf"
        w = gguf.GGUFWriter(str(path), "llama")
        w.add_block_count(2)
        w.add_context_length(64)
        w.add_string("general.name", "seed")
        w.add_array("tokenizer.ggml.tokens", ["a", "b", "ab"])
        w.add_array("tokenizer.ggml.scores", [0.0, -1.0, -2.0])
        w.add_bool("flag", True)
        w.add_tensor("token_embd.weight", np.ones((3, 4), dtype=np.float32))
        w.add_tensor("output_norm.weight", np.ones(4, dtype=np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return path.read_bytes()


def safetensors_seed() -> bytes:
    from safetensors.torch import save

    return save({"a.weight": torch.ones(3, 4), "b.bias": torch.zeros(4, dtype=torch.float16)})


def bpe_seed() -> bytes:
    from parrot.tokenizer import Tokenizer

    tok = Tokenizer.train(["the quick brown fox jumps over the lazy dog " * 8], 280,
                          special_tokens=["<|endoftext|>"])
    with tempfile.TemporaryDirectory() as tmp:
        tok.save(tmp)
        return (Path(tmp) / "tokenizer.json").read_bytes()


def _hf_tokenizer_json(kind: str) -> bytes:
    import tokenizers
    from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

    docs = ["the quick brown fox jumps over the lazy dog", "pack my box with five dozen jugs"]
    if kind == "wordpiece":
        tok = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=120, special_tokens=[
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    else:  # SentencePiece-style byte-fallback BPE, as Gemma's tokenizer.json
        tok = tokenizers.Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
        tok.normalizer = normalizers.Replace(" ", "▁")
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                         decoders.Fuse()])
        trainer = trainers.BpeTrainer(vocab_size=330, special_tokens=["<pad>", "<eos>", "<bos>",
                                                                      "<unk>"],
                                      initial_alphabet=[f"<0x{b:02X}>" for b in range(256)])
    tok.train_from_iterator(docs * 4, trainer)
    return tok.to_str().encode()


def chat_seed() -> bytes:
    return json.dumps({"template": "chatml", "messages": [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"}]}).encode()


def sft_seed() -> bytes:
    rows = [{"messages": [{"role": "user", "content": "what is 2?"},
                          {"role": "assistant", "content": "two"}]},
            {"instruction": "add", "input": "1 1", "output": "2"}]
    return "\n".join(json.dumps(r) for r in rows).encode()


def preference_seed() -> bytes:
    rows = [{"prompt": [{"role": "user", "content": "2+2?"}],
             "chosen": [{"role": "assistant", "content": "4"}],
             "rejected": [{"role": "assistant", "content": "5"}]},
            {"chosen": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
             "rejected": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "go"}]}]
    return "\n".join(json.dumps(r) for r in rows).encode()


def run_config_seed() -> bytes:
    from parrot.model import ModelConfig

    cfg = ModelConfig(vocab_size=260, context_length=16, d_model=16, n_layers=1, n_heads=2)
    return json.dumps({"model": cfg.to_dict()}).encode()


def hf_config_seed() -> bytes:
    return json.dumps({"model_type": "llama", "vocab_size": 64, "hidden_size": 16,
                       "intermediate_size": 32, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "num_key_value_heads": 1,
                       "max_position_embeddings": 32, "rms_norm_eps": 1e-5,
                       "rope_theta": 10000.0, "tie_word_embeddings": True}).encode()


# ---- loaders ------------------------------------------------------------------------


def load_gguf(data: bytes, tmp: Path) -> None:
    from parrot.hub.gguf_parse import parse_gguf

    (tmp / "m.gguf").write_bytes(data)
    parse_gguf(tmp / "m.gguf")


def load_safetensors(data: bytes, tmp: Path) -> None:
    from parrot.adapt.adapter_dir import read_adapter_tensors
    from parrot.hub.hf_common import read_safetensors

    (tmp / "model.safetensors").write_bytes(data)
    read_safetensors(tmp)
    (tmp / "adapter.safetensors").write_bytes(data)
    read_adapter_tensors(tmp)


def load_tokenizer_json(data: bytes, tmp: Path) -> None:
    from parrot.tokenizer import load_tokenizer

    (tmp / "tokenizer.json").write_bytes(data)
    tok = load_tokenizer(tmp)
    ids = tok.encode("the fox, 42 ünïcode ▁ <|endoftext|>")
    tok.decode(ids)


def load_run_config(data: bytes, tmp: Path) -> None:
    from safetensors.torch import save_file

    from parrot.rundir import load_model

    (tmp / "config.json").write_bytes(data)
    save_file({"unused": torch.zeros(1)}, str(tmp / "model.safetensors"))
    load_model(tmp)


def load_hf_config(data: bytes, tmp: Path) -> None:
    from safetensors.torch import save_file

    from parrot.hub.hf import load_hf

    (tmp / "config.json").write_bytes(data)
    save_file({"model.embed_tokens.weight": torch.zeros(64, 16)}, str(tmp / "model.safetensors"))
    load_hf(tmp)


def render_chat(data: bytes, tmp: Path) -> None:
    from parrot.chat import render
    from parrot.tokenizer.hf_json import read_json_file

    (tmp / "chat.json").write_bytes(data)
    spec = read_json_file(tmp / "chat.json", "chat request")
    if not isinstance(spec, dict):
        raise ParrotError("not an object")
    template = spec.get("template", "chatml")
    if not isinstance(template, str):
        raise ParrotError("template must be a string")
    from parrot.chat.templates import get_template

    render(spec.get("messages"), get_template(template), bool(spec.get("generate", True)))


def load_sft(data: bytes, tmp: Path) -> None:
    from parrot.data.sft import encode_conversations, load_conversations
    from parrot.tokenizer import Tokenizer

    (tmp / "data.jsonl").write_bytes(data)
    conversations = load_conversations(tmp / "data.jsonl")
    tok = Tokenizer.train([], 259, special_tokens=["<|endoftext|>", "<|im_start|>",
                                                   "<|im_end|>"])
    encode_conversations(conversations, tok, "chatml", 256)


def load_preference(data: bytes, tmp: Path) -> None:
    from parrot.data.preference import encode_preferences, load_preferences
    from parrot.tokenizer import Tokenizer

    (tmp / "pairs.jsonl").write_bytes(data)
    pairs = load_preferences(tmp / "pairs.jsonl")
    tok = Tokenizer.train([], 259, special_tokens=["<|endoftext|>", "<|im_start|>",
                                                   "<|im_end|>"])
    encode_preferences(pairs, tok, "chatml", 256)


@dataclass(frozen=True)
class Target:
    name: str
    seed: Callable[[], bytes]
    load: Callable[[bytes, Path], None]
    json: bool  # mutate as JSON (structure-aware) or as binary


TARGETS = {t.name: t for t in [
    Target("gguf", gguf_seed, load_gguf, False),
    Target("safetensors", safetensors_seed, load_safetensors, False),
    Target("config_json", run_config_seed, load_run_config, True),
    Target("hf_config_json", hf_config_seed, load_hf_config, True),
    Target("tokenizer_bpe", bpe_seed, load_tokenizer_json, True),
    Target("tokenizer_wordpiece", lambda: _hf_tokenizer_json("wordpiece"), load_tokenizer_json,
           True),
    Target("tokenizer_sentencepiece", lambda: _hf_tokenizer_json("spm"), load_tokenizer_json,
           True),
    Target("chat_messages", chat_seed, render_chat, True),
    Target("sft_jsonl", sft_seed, load_sft, True),
    Target("preference_jsonl", preference_seed, load_preference, True),
    Target("image_png", png_seed, load_image_file, False),
    Target("document_pdf", pdf_seed, read_document("doc.pdf"), False),
    Target("document_html", lambda: b"<html><body><p>Hi &amp; bye</p><script>x</script>"
           b"</body></html>", read_document("page.html"), False),
    Target("document_jsonl", lambda: b'{"text": "one"}\n{"text": "two", "n": 2}\n',
           read_document("rows.jsonl"), True),
]}


def limit_memory(extra_bytes: int = 2 * LIMIT_GROWTH_BYTES) -> None:
    """Cap this process's address space at its current size plus `extra_bytes`, so an
    input that tries to allocate gigabytes fails (MemoryError: a broken rule) instead of
    taking the machine down."""
    with open("/proc/self/statm") as f:
        size = int(f.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (size + extra_bytes, resource.RLIM_INFINITY))


class _Alarm(Exception):
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise _Alarm


def run_one(target: Target, data: bytes, tmp: Path) -> str:
    """Run one input; "ok" or "refused" (a ParrotError), else RuleBroken with the details.
    A SIGALRM stops an input at 2 x LIMIT_S (Python code only; C loops run to their end)."""
    start = time.perf_counter()
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 2 * LIMIT_S)
    try:
        target.load(data, tmp)
        outcome = "ok"
    except _Alarm:
        raise RuleBroken(f"{target.name}: one input ran past {2 * LIMIT_S:.0f} s") from None
    except ParrotError as err:
        if not err.message or "\n" in err.message.strip():
            raise RuleBroken(f"{target.name}: a ParrotError of more than one line: "
                             f"{err.message!r}") from None
        outcome = "refused"
    except Exception as err:  # noqa: BLE001 - what the fuzzer hunts
        raise RuleBroken(f"{target.name}: {type(err).__name__}: {str(err)[:300]}") from err
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    elapsed = time.perf_counter() - start
    if elapsed > LIMIT_S:
        raise RuleBroken(f"{target.name}: one input took {elapsed:.1f} s")
    return outcome


# ---- mutators -----------------------------------------------------------------------


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """A few byte-level edits, favouring overwriting 4/8-byte fields with extreme values."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        at = rng.randrange(max(1, len(out)))
        if op < 0.35 and len(out) >= 8:
            width, value = rng.choice([(8, "<Q"), (4, "<I")])
            at = min(at - at % 4, len(out) - width)
            out[at:at + width] = struct.pack(value, rng.choice(HUGE) % (1 << 8 * width))
        elif op < 0.6 and out:
            out[at] ^= 1 << rng.randrange(8)
        elif op < 0.75:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op < 0.9 and out:
            del out[at:at + rng.randint(1, 64)]
        else:
            out = out[:at]  # truncated
    return bytes(out)


AWKWARD = [2**60, -(2**60), 2**64, -1, 0, 1e308, float("nan"), float("inf"), "", "x" * 10_000,
           None, True, [], {}, [[[[[]]]]], "\udcff", "<|im_start|>", {"role": "user"}, 3.5]


def _nodes(value: Any, path: tuple = ()) -> list[tuple]:
    found = [path]
    if isinstance(value, dict):
        for key in list(value)[:200]:
            found += _nodes(value[key], (*path, key))
    elif isinstance(value, list):
        for i in range(min(len(value), 200)):
            found += _nodes(value[i], (*path, i))
    return found


def mutate_json(data: bytes, rng: random.Random) -> bytes:
    """Replace, delete or duplicate one node of the JSON document (any line of a JSONL);
    falls back to byte edits when the text is no longer JSON."""
    lines = data.split(b"\n")
    line = rng.randrange(len(lines))
    try:
        doc = json.loads(lines[line])
    except ValueError:
        return mutate_bytes(data, rng)
    path = rng.choice(_nodes(doc))
    if not path:
        doc = rng.choice(AWKWARD)
    else:
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        op, key = rng.random(), path[-1]
        if op < 0.6:
            parent[key] = rng.choice(AWKWARD) if rng.random() < 0.8 else \
                _deep(rng.randint(10, 3000))
        elif op < 0.8:
            del parent[key]
        elif isinstance(parent, list):
            parent.extend([parent[key]] * rng.randint(1, 50))
        else:
            parent[f"{key}_"] = parent[key]
    try:
        text = json.dumps(doc, ensure_ascii=rng.random() < 0.5)
    except RecursionError:  # nested past what json.dumps writes: edit the bytes instead
        return mutate_bytes(data, rng)
    lines[line] = text.encode("utf-8", "surrogatepass")
    return b"\n".join(lines)


def _deep(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def mutate(target: Target, data: bytes, rng: random.Random) -> bytes:
    if target.json and rng.random() < 0.85:
        return mutate_json(data, rng)
    return mutate_bytes(data, rng)
