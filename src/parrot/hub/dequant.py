"""Dequantization of GGML block formats, one small numpy function per format.

A quantized tensor is a sequence of blocks; each block stores a few scales and packed
small integers for a fixed number of weights (32, or 256 for the "K" super-blocks).
Every function takes the raw bytes as a (n_blocks, block_bytes) uint8 array and returns
float32 weights (n_blocks, block_size). Layouts follow ggml's `ggml-common.h`; the tests
compare each one with the `gguf` package's reference dequantization.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from parrot.errors import ParrotError

QK = 32  # weights per block of the simple formats
QK_K = 256  # weights per super-block of the K formats


def _f16(blocks: np.ndarray, start: int) -> np.ndarray:
    """The float16 stored at byte `start` of each block, as float32 (n_blocks, 1)."""
    return blocks[:, start:start + 2].copy().view(np.float16).astype(np.float32)


def _nibbles(packed: np.ndarray) -> np.ndarray:
    """Bytes (n, 16) → 32 values: the low nibbles first, then the high nibbles."""
    return np.concatenate((packed & 0x0F, packed >> 4), axis=-1).astype(np.int32)


def dequant_f32(blocks: np.ndarray) -> np.ndarray:
    return blocks.copy().view(np.float32)


def dequant_f16(blocks: np.ndarray) -> np.ndarray:
    return blocks.copy().view(np.float16).astype(np.float32)


def dequant_bf16(blocks: np.ndarray) -> np.ndarray:
    """bfloat16 is the top half of a float32: shift the 16 bits left by 16."""
    return (blocks.copy().view(np.uint16).astype(np.uint32) << 16).view(np.float32)


def dequant_q8_0(blocks: np.ndarray) -> np.ndarray:
    """Block of 32: d (f16), q[32] (int8).  x = d * q."""
    d = _f16(blocks, 0)
    q = blocks[:, 2:].copy().view(np.int8).astype(np.float32)
    return d * q


def dequant_q4_0(blocks: np.ndarray) -> np.ndarray:
    """Block of 32: d (f16), 16 bytes of 4-bit q (x[i] low nibble, x[i+16] high).  x = d * (q - 8)."""
    d = _f16(blocks, 0)
    return d * (_nibbles(blocks[:, 2:]) - 8).astype(np.float32)


def dequant_q4_1(blocks: np.ndarray) -> np.ndarray:
    """Block of 32: d (f16), m (f16), 16 bytes of 4-bit q.  x = d * q + m."""
    d, m = _f16(blocks, 0), _f16(blocks, 2)
    return d * _nibbles(blocks[:, 4:]).astype(np.float32) + m


def _five_bits(qh: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """qh (n, 4) little-endian 32-bit high bits (bit i for weight i), qs (n, 16) nibbles
    → 32 five-bit values: nibble | (bit i) << 4."""
    high = (qh.copy().view("<u4") >> np.arange(QK, dtype=np.uint32)) & 1   # (n, 32)
    return _nibbles(qs) | (high.astype(np.int32) << 4)


def dequant_q5_0(blocks: np.ndarray) -> np.ndarray:
    """Block of 32: d (f16), qh (u32), 16 bytes of low nibbles.  x = d * (q - 16)."""
    d = _f16(blocks, 0)
    return d * (_five_bits(blocks[:, 2:6], blocks[:, 6:]) - 16).astype(np.float32)


def dequant_q5_1(blocks: np.ndarray) -> np.ndarray:
    """Block of 32: d (f16), m (f16), qh (u32), 16 bytes of low nibbles.  x = d * q + m."""
    d, m = _f16(blocks, 0), _f16(blocks, 2)
    return d * _five_bits(blocks[:, 4:8], blocks[:, 8:]).astype(np.float32) + m


def k_scales_mins(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unpack the 8 six-bit scales and 8 six-bit mins of a Q4_K/Q5_K super-block.

    `packed` is (n, 12). For j < 4: scale = q[j] & 63, min = q[j+4] & 63. For j >= 4 the low
    four bits sit in q[j+4] (scale: low nibble, min: high nibble) and the top two bits in
    the spare top bits of q[j-4] (scale) and q[j] (min).
    """
    q = packed.astype(np.int32)
    scales = np.empty((q.shape[0], 8), np.int32)
    mins = np.empty((q.shape[0], 8), np.int32)
    scales[:, :4] = q[:, 0:4] & 63
    mins[:, :4] = q[:, 4:8] & 63
    scales[:, 4:] = (q[:, 8:12] & 0x0F) | ((q[:, 0:4] >> 6) << 4)
    mins[:, 4:] = (q[:, 8:12] >> 4) | ((q[:, 4:8] >> 6) << 4)
    return scales, mins


def dequant_q4_k(blocks: np.ndarray) -> np.ndarray:
    """Super-block of 256 = 8 sub-blocks of 32: d, dmin (f16), 12 bytes of 6-bit scales and
    mins, 128 bytes of 4-bit q. Each 32 bytes of q hold two sub-blocks (low nibbles, then
    high).  x = d * scale_s * q - dmin * min_s for sub-block s."""
    d, dmin = _f16(blocks, 0), _f16(blocks, 2)
    scales, mins = k_scales_mins(blocks[:, 4:16])
    qs = blocks[:, 16:144].reshape(-1, 4, 32)
    q = np.concatenate((qs & 0x0F, qs >> 4), axis=-1).reshape(-1, 8, 32)  # sub-block order
    x = (d * scales)[:, :, None] * q - (dmin * mins)[:, :, None]
    return x.reshape(-1, QK_K).astype(np.float32)


def dequant_q5_k(blocks: np.ndarray) -> np.ndarray:
    """As Q4_K plus a fifth bit per weight: d, dmin, scales[12], qh[32], qs[128].
    Bit s of qh[l] is the high bit of weight l of sub-block s.
    x = d * scale_s * (q + 16 * high) - dmin * min_s."""
    d, dmin = _f16(blocks, 0), _f16(blocks, 2)
    scales, mins = k_scales_mins(blocks[:, 4:16])
    qh = blocks[:, 16:48].astype(np.int32)                                  # (n, 32)
    qs = blocks[:, 48:176].reshape(-1, 4, 32)
    low = np.concatenate((qs & 0x0F, qs >> 4), axis=-1).reshape(-1, 8, 32).astype(np.int32)
    high = (qh[:, None, :] >> np.arange(8)[None, :, None]) & 1             # (n, 8, 32)
    x = (d * scales)[:, :, None] * (low + 16 * high) - (dmin * mins)[:, :, None]
    return x.reshape(-1, QK_K).astype(np.float32)


def dequant_q6_k(blocks: np.ndarray) -> np.ndarray:
    """Super-block of 256 = 16 sub-blocks of 16: ql[128] (low 4 bits), qh[64] (high 2 bits),
    scales[16] (int8), d (f16).  x = d * scale_s * (q - 32), q a 6-bit value.

    Each half of 128 weights uses 64 bytes of ql and 32 of qh: weights l, l+32, l+64, l+96
    take the low nibble of ql[l], of ql[l+32], the high nibble of ql[l], of ql[l+32], and
    bits 0-1, 2-3, 4-5, 6-7 of qh[l].
    """
    ql = blocks[:, 0:128].reshape(-1, 2, 64).astype(np.int32)
    qh = blocks[:, 128:192].reshape(-1, 2, 32).astype(np.int32)
    scales = blocks[:, 192:208].copy().view(np.int8).astype(np.float32)    # (n, 16)
    d = _f16(blocks, 208)
    low = np.concatenate((ql[..., :32] & 0x0F, ql[..., 32:] & 0x0F,
                          ql[..., :32] >> 4, ql[..., 32:] >> 4), axis=-1)  # (n, 2, 128)
    high = np.concatenate([(qh >> shift) & 3 for shift in (0, 2, 4, 6)], axis=-1)
    q = (low | (high << 4)) - 32                                            # (n, 2, 128)
    x = (d * scales)[:, :, None] * q.reshape(-1, 16, 16)
    return x.reshape(-1, QK_K).astype(np.float32)


# GGML type name → (weights per block, bytes per block, dequantizer).
FORMATS: dict[str, tuple[int, int, Callable[[np.ndarray], np.ndarray]]] = {
    "F32": (1, 4, dequant_f32),
    "F16": (1, 2, dequant_f16),
    "BF16": (1, 2, dequant_bf16),
    "Q8_0": (QK, 34, dequant_q8_0),
    "Q4_0": (QK, 18, dequant_q4_0),
    "Q4_1": (QK, 20, dequant_q4_1),
    "Q5_0": (QK, 22, dequant_q5_0),
    "Q5_1": (QK, 24, dequant_q5_1),
    "Q4_K": (QK_K, 144, dequant_q4_k),
    "Q5_K": (QK_K, 176, dequant_q5_k),
    "Q6_K": (QK_K, 210, dequant_q6_k),
}


def dequantize(raw: np.ndarray, qtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Raw bytes of a tensor in format `qtype` → float32 array of `shape` (row-major)."""
    if qtype not in FORMATS:
        raise ParrotError(f"Tensor type {qtype} is not supported; parrot reads "
                          f"{', '.join(FORMATS)}. Use a file quantized with one of those.")
    block_size, block_bytes, fn = FORMATS[qtype]
    count = int(np.prod(shape))
    flat = np.ascontiguousarray(raw).reshape(-1).view(np.uint8)
    if count % block_size or flat.size != count // block_size * block_bytes:
        raise ParrotError(f"A {qtype} tensor of shape {shape} needs "
                          f"{count // block_size * block_bytes} bytes, got {flat.size}; "
                          "the file is corrupt.")
    return fn(flat.reshape(-1, block_bytes)).reshape(shape)
