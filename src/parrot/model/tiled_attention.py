"""FlashAttention's tiling in plain PyTorch: exact attention without the T x S score matrix.

The explicit path (`attention.attention`) builds all T x S scores, softmaxes them and
multiplies by V: memory grows with T * S. The tiled path walks over blocks of keys and
values once per block of queries and keeps, for each query row, three running values:

    m      the largest score seen so far                       (B, H, Tq)
    denom  the sum of exp(score - m) seen so far               (B, H, Tq)
    acc    the sum of exp(score - m) * v seen so far           (B, H, Tq, D)

A new block of scores s raises the maximum to m' = max(m, max_j s_j); what was summed
under the old maximum is rescaled by exp(m - m'), the "online softmax" (Milakov and
Gimelshein 2018):

    denom' = exp(m - m') * denom + sum_j exp(s_j - m')
    acc' = exp(m - m') * acc + sum_j exp(s_j - m') v_j

and after the last block out = acc / denom, which is softmax(s) v exactly (up to rounding).
Only a (Tq_block x S_block) tile of scores exists at any time, so memory is
O(T * D + block^2) instead of O(T * S). Blocks that a causal mask or a sliding window
hides completely are skipped, so the masked half of the work is never done.

Why this is IO-aware (Dao et al. 2022): on a GPU the score matrix of a long sequence does
not fit in on-chip SRAM, so the explicit path writes T x S scores to HBM, reads them back
for the softmax, writes the weights, and reads them again for the product with V. Those
HBM round trips, not the FLOPs, dominate its time. The tiled algorithm reads Q, K and V
once per tile and writes only the output: HBM traffic drops from O(T * S) to
O(T * S * D^2 / M) for an SRAM of M bytes. What the fused GPU kernel adds beyond this file:
each tile lives in registers and shared memory for the whole inner loop (here every tile
op is a separate PyTorch kernel that goes through memory), the backward pass recomputes
the tiles from Q, K, V and the saved row statistics (m, denom) instead of storing the
weights, and the work is split over thread blocks by query block and head. This file is the
readable algorithm; parrot's fast path stays PyTorch's `scaled_dot_product_attention`,
which dispatches to such fused kernels where they exist.
"""

from __future__ import annotations

import math

import torch


def visible_block(q_lo: int, q_hi: int, k_lo: int, k_hi: int, causal: bool,
                  window: int | None) -> bool:
    """Whether any query position in [q_lo, q_hi) may see any key position in [k_lo, k_hi).

    A query at p sees key s when s <= p (causal) and p - s < window (sliding window).
    """
    if causal and k_lo > q_hi - 1:
        return False
    return window is None or (q_lo - (k_hi - 1)) < window


def block_mask(q_pos: torch.Tensor, k_pos: torch.Tensor, causal: bool,
               window: int | None) -> torch.Tensor | None:
    """allowed[t, s] for one tile (Tq, Sk), bool; None when every pair is allowed."""
    distance = q_pos[:, None] - k_pos[None, :]
    allowed = None
    if causal:
        allowed = distance >= 0
    if window is not None:
        inside = distance < window
        allowed = inside if allowed is None else allowed & inside
    return allowed


def online_softmax_step(m: torch.Tensor, denom: torch.Tensor, acc: torch.Tensor,
                        scores: torch.Tensor, v: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fold one tile of scores (..., Tq, Sk) and values (..., Sk, D) into (m, denom, acc):

        m' = max(m, max_j s_j);  c = exp(m - m')
        denom' = c * denom + sum_j exp(s_j - m');  acc' = c * acc + sum_j exp(s_j - m') v_j

    Masked scores are -inf. A row that has seen only -inf keeps m = -inf; the shift is
    taken as 0 there so exp never sees (-inf) - (-inf).
    """
    m_new = torch.maximum(m, scores.amax(dim=-1))
    shift = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)
    p = torch.exp(scores - shift[..., None])                                # (..., Tq, Sk)
    correction = torch.exp(m - shift)
    denom_new = correction * denom + p.sum(dim=-1)
    acc_new = correction[..., None] * acc + p @ v
    return m_new, denom_new, acc_new


def tiled_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = True,
                    window: int | None = None, scale: float | None = None,
                    block_q: int = 128, block_k: int = 128) -> torch.Tensor:
    """softmax(scale * q k^T, masked) v, one pass over key/value blocks per query block.

    q (B, H, T, D); k, v (B, Hkv, S, D) with H a multiple of Hkv (grouped-query: query
    head h reads kv head h // (H / Hkv), by a view, never a copy). The T queries are the
    last T of the S positions (S == T without a cache), so query t sits at position
    S - T + t. causal: keys after the query are hidden; window W: keys W or more positions
    back are hidden too (the convention of `attention.causal_mask`). Returns (B, H, T, D)
    in q's dtype; the statistics are kept in float32 (float64 inputs stay float64).
    """
    B, H, T, D = q.shape
    h_kv, S = k.shape[1], k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    stat_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    qg = q.view(B, h_kv, H // h_kv, T, D)                  # (B, Hkv, rep, T, D)
    kg, vg = k[:, :, None], v[:, :, None]                  # (B, Hkv, 1, S, D)
    out = torch.empty_like(q).view(B, h_kv, H // h_kv, T, D)
    offset = S - T
    for q_lo in range(0, T, block_q):
        q_hi = min(q_lo + block_q, T)
        q_tile = qg[..., q_lo:q_hi, :].to(stat_dtype) * scale
        shape = (*q_tile.shape[:-1],)
        m = torch.full(shape, float("-inf"), dtype=stat_dtype, device=q.device)
        denom = torch.zeros(shape, dtype=stat_dtype, device=q.device)
        acc = torch.zeros_like(q_tile)
        q_pos = torch.arange(q_lo + offset, q_hi + offset, device=q.device)
        for k_lo in range(0, S, block_k):
            k_hi = min(k_lo + block_k, S)
            if not visible_block(q_lo + offset, q_hi + offset, k_lo, k_hi, causal, window):
                continue
            scores = q_tile @ kg[..., k_lo:k_hi, :].to(stat_dtype).transpose(-2, -1)
            allowed = block_mask(q_pos, torch.arange(k_lo, k_hi, device=q.device),
                                 causal, window)
            if allowed is not None:
                scores = scores.masked_fill(~allowed, float("-inf"))
            m, denom, acc = online_softmax_step(m, denom, acc, scores,
                                            vg[..., k_lo:k_hi, :].to(stat_dtype))
        out[..., q_lo:q_hi, :] = (acc / denom[..., None]).to(q.dtype)
    return out.view(B, H, T, D)
