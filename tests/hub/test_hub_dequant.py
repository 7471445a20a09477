"""Our per-block dequantization equals the `gguf` package's reference, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as QT  # noqa: E402

from parrot.errors import ParrotError  # noqa: E402
from parrot.hub.dequant import FORMATS, dequantize, k_scales_mins  # noqa: E402

# Byte offsets of the float16 scales inside each block format.
F16_FIELDS = {"Q8_0": (0,), "Q4_0": (0,), "Q4_1": (0, 2), "Q5_0": (0,), "Q5_1": (0, 2),
              "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}


def random_blocks(qtype: str, n_blocks: int, seed: int) -> np.ndarray:
    """Random packed bytes with finite, modest float16 scales where the format has them."""
    rng = np.random.default_rng(seed)
    block_size, block_bytes, _ = FORMATS[qtype]
    if qtype in ("F32", "F16"):
        dtype = np.float32 if qtype == "F32" else np.float16
        values = rng.standard_normal(n_blocks).astype(dtype)
        return values.view(np.uint8).reshape(n_blocks, block_bytes)
    if qtype == "BF16":
        values = rng.standard_normal(n_blocks).astype(np.float32)
        return (values.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8).reshape(-1, 2)
    raw = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    for start in F16_FIELDS[qtype]:
        scales = (rng.random(n_blocks) * 0.2 - 0.1).astype(np.float16)
        raw[:, start:start + 2] = scales.view(np.uint8).reshape(n_blocks, 2)
    return raw


@pytest.mark.parametrize("qtype", sorted(FORMATS))
def test_dequantize_random_blocks_matches_gguf_reference(qtype):
    block_size, _, _ = FORMATS[qtype]
    n_blocks = 24 if block_size > 1 else 24 * 32
    raw = random_blocks(qtype, n_blocks, seed=len(qtype))
    ours = dequantize(raw, qtype, (n_blocks * block_size,))
    reference = gguf.quants.dequantize(raw.reshape(-1), QT[qtype]).reshape(-1)
    np.testing.assert_array_equal(ours, reference)


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0", "Q4_1", "F16", "BF16"])
def test_dequantize_of_gguf_quantized_weights_matches_reference(qtype):
    """Weights quantized by gguf's own `quantize` come back as gguf dequantizes them,
    and close to the original values."""
    rng = np.random.default_rng(1)
    weights = rng.standard_normal((8, 64)).astype(np.float32)
    try:
        packed = gguf.quants.quantize(weights, QT[qtype])
    except NotImplementedError:
        pytest.skip(f"gguf cannot quantize {qtype}")
    ours = dequantize(packed, qtype, weights.shape)
    np.testing.assert_array_equal(ours, gguf.quants.dequantize(packed, QT[qtype]))
    assert np.abs(ours - weights).max() < 0.5


def test_k_scales_mins_unpack_six_bit_fields_by_hand():
    # Scale j=5 takes its low bits from q[9] & 0x0F and its top two from q[1] >> 6.
    packed = np.zeros((1, 12), np.uint8)
    packed[0, 1] = 0b1100_0011  # scale 1 = 3, top bits of scale 5 = 3
    packed[0, 9] = 0xA7  # scale 5 low = 7, min 5 low = 10
    packed[0, 5] = 0b0100_0001  # min 1 = 1, top bits of min 5 = 1
    scales, mins = k_scales_mins(packed)
    assert scales[0, 1] == 3 and mins[0, 1] == 1
    assert scales[0, 5] == (3 << 4) | 7
    assert mins[0, 5] == (1 << 4) | 10


def test_dequantize_rejects_unknown_type_and_wrong_size():
    with pytest.raises(ParrotError, match="IQ2_XS is not supported"):
        dequantize(np.zeros(66, np.uint8), "IQ2_XS", (256,))
    with pytest.raises(ParrotError, match="corrupt"):
        dequantize(np.zeros(33, np.uint8), "Q8_0", (32,))


def test_real_smollm2_tensors_match_gguf_reference(smollm2_gguf):
    for name in ("token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_norm.weight"):
        tensor = smollm2_gguf.tensors[name]
        ours = tensor.dequantize().numpy()
        reference = gguf.quants.dequantize(tensor.raw, QT[tensor.qtype]).reshape(tensor.shape)
        np.testing.assert_array_equal(ours, reference)
