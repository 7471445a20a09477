"""Test doubles and helpers for the engine tests: a byte-level tokenizer and a model that follows a script.

The byte tokenizer honours the tokenizer contract (encode/decode/token_bytes/eos_id) with
one id per byte plus a few multi-byte tokens, so tests do not depend on BPE training.
"""

import torch

from parrot.model import ModelConfig, Transformer

EOS = 256
# Multi-byte tokens: the first two split the parrot emoji (F0 9F A6 9C) across tokens.
EXTRA = {257: b"\xf0\x9f", 258: b"\xa6\x9c", 259: b"<ST", 260: b"OP>", 261: b"ab"}


class ByteTokenizer:
    vocab_size = 262
    eos_id = EOS
    bos_id = None

    def token_bytes(self, token_id: int) -> bytes:
        if token_id < 256:
            return bytes([token_id])
        return b"<|eos|>" if token_id == EOS else EXTRA[token_id]

    def encode(self, text: str, allowed_special="none") -> list[int]:
        return list(text.encode("utf-8"))

    def decode_bytes(self, ids) -> bytes:
        return b"".join(self.token_bytes(i) for i in ids)

    def decode(self, ids) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


class ScriptedModel(torch.nn.Module):
    """Predicts script[p + 1] at position p (one-hot logits), ignoring the cache."""

    def __init__(self, script: list[int], vocab_size: int = 262, context_length: int = 64):
        super().__init__()
        self.config = ModelConfig(vocab_size=vocab_size, context_length=context_length,
                                  d_model=8, n_layers=1, n_heads=1)
        self.script = torch.tensor(script)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, tokens, positions=None, cache=None, capture=None):
        B, T = tokens.shape
        if positions is None:
            positions = torch.arange(T).expand(B, T)
        nxt = self.script[(positions + 1).clamp(max=len(self.script) - 1)]
        logits = torch.full((B, T, self.config.vocab_size), -10.0)
        return logits.scatter(-1, nxt[..., None], 10.0)



def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=262, context_length=48, d_model=32, n_layers=2, n_heads=4,
                      **overrides)
    return Transformer(cfg).eval()


def prompts(lengths, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (n,), generator=g).tolist() for n in lengths]


def assert_matches_recompute(model, completion):
    """Every recorded decode logit row equals a full forward over the whole sequence."""
    seq = completion.prompt_ids + completion.token_ids
    with torch.no_grad():
        full = model(torch.tensor([seq]))[0]
    start = len(completion.prompt_ids) - 1
    expected = full[start : start + len(completion.token_ids)]
    assert (completion.logits - expected).abs().max().item() < 1e-5


def pad_batch(rows, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists into (B, S) long ids and a (B, S) bool mask (True = real token)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = True
    return ids, mask


@torch.no_grad()
def generate_recompute(m, sources, tokens,
                       max_new_tokens: int) -> list[list[int]]:
    """Greedy decoding without any cache (the whole prefix re-run each step), up to eos."""
    src, mask = pad_batch(sources, tokens.pad_id)
    memory = m.encode(src, mask)
    ys = torch.full((src.shape[0], 1), tokens.start_id, dtype=torch.long)
    for _ in range(max_new_tokens):
        logits = m.decode(ys, memory, mask)[:, -1]
        ys = torch.cat([ys, logits.argmax(-1, keepdim=True)], dim=1)
    rows = [row[1:] for row in ys.tolist()]
    return [row[: row.index(tokens.eos_id)] if tokens.eos_id in row else row for row in rows]
