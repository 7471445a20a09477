"""GRU encoder-decoders before the transformer: a fixed context vector, or Bahdanau attention.

The history lesson of attention (Cho et al. 2014; Bahdanau, Cho and Bengio 2014). Both
models read the source with the same bidirectional GRU, giving one annotation per source
token, h_j = [forward_j; backward_j] (B, S, 2H), and final states of both directions.

  - Fixed vector (RNN encoder-decoder): the decoder sees the source only through
    c = tanh(W_c [forward_S; backward_1]), the same c at every step. Everything about a
    source of 80 tokens must fit in these d_hidden numbers.
  - Additive attention (RNNsearch): before emitting y_i the decoder scores every
    annotation against its state s_{i-1},

        e_ij = v^T tanh(W_s s_{i-1} + W_h h_j),   alpha_ij = softmax_j(e_ij)
        c_i  = sum_j alpha_ij h_j

    so it searches the source afresh for each output token.

The decoder state runs s_i = GRU(x_i, s_{i-1}) from s_0 = tanh(W_0 [forward_S; backward_1])
and the logits are W_o [s_i; c_i; emb(y_{i-1})]. The fixed-vector model reads
x_i = [emb(y_{i-1}); c] (c at every step, as Cho et al. do); the attention model reads
x_i = emb(y_{i-1}) and takes c_i into the output layer only. That is one difference from
Bahdanau et al., who also feed c_i into the recurrence: without it every s_i is known
from the target prefix alone, so teacher forcing runs the decoder GRU in one fused call
and scores all (i, j) pairs at once, instead of 80 sequential steps (the difference
between minutes and hours on this shared CPU). The search over the source, which is the
lesson, is the same. `forward(src, tgt_in, src_mask)` has the shape of parrot's
transformer encoder-decoder, so the same seq2seq objective trains all three models.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from parrot.errors import ParrotError


@dataclass(frozen=True)
class RNNConfig:
    """vocab_size tokens, embeddings of d_embed, GRU states of d_hidden; attention=False
    is the fixed-vector model; d_attn the additive attention's width (None = d_hidden)."""

    vocab_size: int
    d_embed: int = 64
    d_hidden: int = 128
    attention: bool = True
    d_attn: int | None = None

    def __post_init__(self) -> None:
        for key in ("vocab_size", "d_embed", "d_hidden"):
            if getattr(self, key) < 1:
                raise ParrotError(f"RNN config {key} must be positive, got {getattr(self, key)}.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RNNConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ParrotError(f"Unknown RNN config key(s) {', '.join(unknown)}; valid keys are "
                              f"{', '.join(sorted(known))}.")
        return cls(**data)


@dataclass
class Encoded:
    """What the encoder hands the decoder: annotations (B, S, 2H), the source mask (B, S)
    and the summary of the final states (B, 2H)."""

    annotations: torch.Tensor
    mask: torch.Tensor
    final: torch.Tensor


def additive_attention(queries: torch.Tensor, keys: torch.Tensor, annotations: torch.Tensor,
                       mask: torch.Tensor, w_s: nn.Linear, v: nn.Linear
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(c (B, T, 2H), alpha (B, T, S)): alpha_ij = softmax_j(v^T tanh(W_s s_i + W_h h_j)),
    c_i = sum_j alpha_ij h_j, for queries s (B, T, H). keys = W_h h_j, computed once per
    source (B, S, A); padding keys (mask False) get weight 0."""
    scores = v(torch.tanh(w_s(queries)[:, :, None, :] + keys[:, None])).squeeze(-1)  # (B,T,S)
    alpha = torch.softmax(scores.masked_fill(~mask[:, None, :], float("-inf")), dim=-1)
    return alpha @ annotations, alpha


class GRUEncoderDecoder(nn.Module):
    """The two models of the module docstring; `config.attention` picks one."""

    def __init__(self, cfg: RNNConfig) -> None:
        super().__init__()
        self.config = cfg
        H, E, A = cfg.d_hidden, cfg.d_embed, cfg.d_attn or cfg.d_hidden
        self.embed = nn.Embedding(cfg.vocab_size, E)
        self.encoder = nn.GRU(E, H, batch_first=True, bidirectional=True)
        self.init_state = nn.Linear(2 * H, H)
        self.decoder = nn.GRU(E if cfg.attention else E + 2 * H, H, batch_first=True)
        self.out = nn.Linear(H + 2 * H + E, cfg.vocab_size)
        if cfg.attention:
            self.w_s, self.w_h, self.v = nn.Linear(H, A), nn.Linear(2 * H, A), nn.Linear(A, 1)
        else:
            self.fixed = nn.Linear(2 * H, 2 * H)

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> Encoded:
        """src (B, S) ids, src_mask (B, S) bool (True = real) -> Encoded."""
        lengths = src_mask.sum(1).cpu()
        packed = pack_padded_sequence(self.embed(src), lengths, batch_first=True,
                                      enforce_sorted=False)
        out, last = self.encoder(packed)                     # last (2, B, H): fwd_S, bwd_1
        annotations, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        return Encoded(annotations, src_mask, torch.cat([last[0], last[1]], dim=-1))

    def start(self, enc: Encoded) -> tuple[torch.Tensor, Any]:
        """(s_0 (B, H), what each step reads of the source: keys or the fixed c)."""
        s0 = torch.tanh(self.init_state(enc.final))
        if self.config.attention:
            return s0, self.w_h(enc.annotations)                              # (B, S, A)
        return s0, torch.tanh(self.fixed(enc.final))                          # (B, 2H)

    def run_decoder(self, emb: torch.Tensor, state: torch.Tensor, enc: Encoded, source: Any
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Decoder states and contexts for inputs emb (B, T, E) of y_0..y_{T-1} from state
        s_0 (B, H): (states s_1..s_T (B, T, H), contexts (B, T, 2H), alpha (B, T, S) or
        None)."""
        if not self.config.attention:
            context = source[:, None].expand(-1, emb.shape[1], -1)            # (B, T, 2H)
            states, _ = self.decoder(torch.cat([emb, context], -1), state[None])
            return states, context, None
        states, _ = self.decoder(emb, state[None])                            # (B, T, H)
        previous = torch.cat([state[:, None], states[:, :-1]], 1)             # s_0..s_{T-1}
        context, alpha = additive_attention(previous, source, enc.annotations, enc.mask,
                                            self.w_s, self.v)
        return states, context, alpha

    def step(self, y_prev: torch.Tensor, state: torch.Tensor, enc: Encoded, source: Any
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One decoder step: (logits (B, V), s_i (B, H), alpha (B, S) or None)."""
        emb = self.embed(y_prev)[:, None]                                     # (B, 1, E)
        states, context, alpha = self.run_decoder(emb, state, enc, source)
        logits = self.out(torch.cat([states, context, emb], -1))[:, 0]
        return logits, states[:, 0], None if alpha is None else alpha[:, 0]

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, src_mask: torch.Tensor,
                capture: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Teacher forcing: logits (B, T, V) for decoder inputs tgt_in (B, T). A list
        passed as `capture` receives the attention weights (B, T, S)."""
        return self.decode(self.encode(src, src_mask), tgt_in, capture)

    def decode(self, enc: Encoded, tgt_in: torch.Tensor,
               capture: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Teacher forcing from an Encoded source: logits (B, T, V)."""
        state, source = self.start(enc)
        emb = self.embed(tgt_in)                                              # (B, T, E)
        states, context, alpha = self.run_decoder(emb, state, enc, source)
        if capture is not None and alpha is not None:
            capture.append(alpha.detach())
        return self.out(torch.cat([states, context, emb], -1))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


@torch.no_grad()
def greedy_decode(model: GRUEncoderDecoder, src: torch.Tensor, src_mask: torch.Tensor,
                  start_id: int, eos_id: int, max_len: int
                  ) -> tuple[list[list[int]], torch.Tensor | None]:
    """Argmax decoding of a batch: (ids per row, without </s>; alpha (B, T, S) or None)."""
    enc = model.encode(src, src_mask)
    state, source = model.start(enc)
    y = torch.full((src.shape[0],), start_id, dtype=torch.long)
    rows: list[list[int]] = [[] for _ in range(src.shape[0])]
    done = torch.zeros(src.shape[0], dtype=torch.bool)
    weights = []
    for _ in range(max_len):
        logits, state, alpha = model.step(y, state, enc, source)
        y = logits.argmax(-1)
        if alpha is not None:
            weights.append(alpha)
        for i in (~done).nonzero().flatten().tolist():
            if int(y[i]) == eos_id:
                done[i] = True
            else:
                rows[i].append(int(y[i]))
        if bool(done.all()):
            break
    return rows, (torch.stack(weights, 1) if weights else None)


def build_rnn(cfg: RNNConfig) -> GRUEncoderDecoder:
    return GRUEncoderDecoder(cfg)
