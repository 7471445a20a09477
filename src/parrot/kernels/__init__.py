"""parrot's own decode kernels, in C (`decode.c`), built on first use and called via ctypes.

A decode step reads every weight once and does little arithmetic; PyTorch's weight-only
CPU kernels want bfloat16 activations and read int8 weights at about half of what the
memory delivers, and the small steps around them (norms, RoPE, the cache write, attention
over the cache) cost more in fixed overhead than in work. `decode.c` does those in a few
calls: int8 weights times float32 activations, 4-bit weights times activations rounded
to int8 per group of 32 (llama.cpp's scheme), RMSNorm rows, and one-call decode attention.

The library is compiled once per machine with the system C compiler (`$CC`, else `cc` or
`gcc`) into `$PARROT_HOME/kernels/` under a name that hashes the source, the flags and the
CPU, written atomically so parallel processes may race. Without a compiler, or with
`PARROT_NATIVE=0`, `available()` is False and callers use PyTorch's kernels instead.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
from pathlib import Path

import torch  # loaded first, so the library joins PyTorch's OpenMP runtime (one pool)

from parrot.utils.atomic import atomic_path
from parrot.utils.home import default_home

__all__ = ["GROUP", "available", "decode_attention", "matvec_int4", "matvec_int8",
           "rms_norm_rows"]

SOURCE = Path(__file__).with_name("decode.c")
# Reassociating float sums lets reductions vectorize; unlike -ffast-math this keeps
# infinities and NaNs (softmax starts from -inf).
FLAGS = ("-O3", "-march=native", "-fassociative-math", "-fno-signed-zeros", "-fno-trapping-math",
         "-fopenmp", "-shared", "-fPIC")
GROUP = 32  # must equal GROUP in decode.c
_log = logging.getLogger(__name__)

_I64, _PTR = ctypes.c_int64, ctypes.c_void_p
_SIGNATURES = {
    "matvec_int8": [_PTR] * 4 + [_I64] * 4,
    "matvec_int4": [_PTR] * 5 + [_I64] * 4,
    "rms_norm_rows": [_PTR] * 3 + [_I64] * 2 + [ctypes.c_float],
    "decode_attention": [_PTR] * 7 + [_I64] * 7 + [ctypes.c_float, _I64],
}


def available() -> bool:
    """Whether the compiled kernels can be used in this process."""
    return _library() is not None


def matvec_int8(x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (rows, in) float32 @ (q * scale[:, None]).T -> (rows, out) float32.

    q (out, in) int8, scale (out,) float32, all contiguous; in a multiple of 32.
    """
    rows, out = x.shape[0], q.shape[0]
    y = torch.empty(rows, out, dtype=torch.float32)
    _library().matvec_int8(x.data_ptr(), q.data_ptr(), scale.data_ptr(), y.data_ptr(),
                           rows, out, q.shape[1], torch.get_num_threads())
    return y


def matvec_int4(x: torch.Tensor, codes: torch.Tensor, scale: torch.Tensor,
                offset: torch.Tensor) -> torch.Tensor:
    """x (rows, in) float32 @ W.T with W = code * scale + offset per group of 32 inputs,
    the activations rounded to int8 per group inside (as llama.cpp does) -> (rows, out).

    codes (out, in / 2) uint8, two 4-bit codes per byte in llama.cpp's group layout
    (`parrot.adapt.quantize.pack_nibbles`); scale, offset (out, in / 32) float32.
    """
    rows, out = x.shape[0], codes.shape[0]
    y = torch.empty(rows, out, dtype=torch.float32)
    _library().matvec_int4(x.data_ptr(), codes.data_ptr(), scale.data_ptr(), offset.data_ptr(),
                           y.data_ptr(), rows, out, x.shape[1], torch.get_num_threads())
    return y


def rms_norm_rows(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) * weight over the last dimension; x float32 contiguous,
    weight (dim,) float32. No autograd: for inference."""
    y = torch.empty_like(x)
    dim = x.shape[-1]
    _library().rms_norm_rows(x.data_ptr(), weight.data_ptr(), y.data_ptr(), x.numel() // dim,
                             dim, eps)
    return y


def decode_attention(qkv: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None,
                     positions: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                     heads: int, kv_heads: int, window: int | None, scale: float
                     ) -> torch.Tensor:
    """Attention for one new token per row, reading and extending a KV cache in place.

    qkv (rows, (heads + 2 kv_heads) * D) float32: the fused projection of the new tokens;
    rope: tables (cos, sin) from `parrot.model.positions.rope_angles`, each with rows * D
    values, or None; positions (rows,) int64: each token's slot; keys, values: one layer
    of the cache, (rows, kv_heads, max_len, D) with contiguous slots. Each row attends to
    its slots 0..position (the last `window` of them if given). Returns (rows, heads * D).
    """
    rows, head_dim = qkv.shape[0], keys.shape[-1]
    positions = positions.to(torch.int64).contiguous()  # C reads int64 slot numbers
    out = torch.empty(rows, heads * head_dim, dtype=torch.float32)
    cos, sin = (None, None) if rope is None else (t.contiguous() for t in rope)
    _library().decode_attention(
        qkv.data_ptr(), None if cos is None else cos.data_ptr(),
        None if sin is None else sin.data_ptr(), positions.data_ptr(), keys.data_ptr(),
        values.data_ptr(), out.data_ptr(), rows, heads, kv_heads, head_dim, keys.stride(0),
        keys.stride(1), window or 0, scale, torch.get_num_threads())
    return out


@functools.cache
def _library() -> ctypes.CDLL | None:
    if os.environ.get("PARROT_NATIVE", "1") == "0":
        return None
    try:
        path = _build()
        library = ctypes.CDLL(str(path))
    except (OSError, subprocess.SubprocessError) as error:
        _log.warning("parrot's C kernels are unavailable (%s); using PyTorch's.", error)
        return None
    for name, argtypes in _SIGNATURES.items():
        function = getattr(library, name)
        function.argtypes, function.restype = argtypes, None
    return library


def _build() -> Path:
    """The compiled library, built now unless a matching one is cached."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise OSError("no C compiler found (set CC or install gcc)")
    source = SOURCE.read_bytes()
    version = subprocess.run([compiler, "--version"], capture_output=True, check=True,
                             timeout=60).stdout
    key = hashlib.sha256(b"\0".join([source, " ".join(FLAGS).encode(), version,
                                     _cpu_signature()])).hexdigest()[:16]
    target = default_home() / "kernels" / f"decode-{key}.so"
    if not target.exists():
        with atomic_path(target) as tmp:
            subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", str(tmp), "-lm"], check=True,
                           capture_output=True, timeout=300)
    return target


def _cpu_signature() -> bytes:
    """What `-march=native` depends on: the machine and, on Linux, the CPU's feature flags."""
    flags = b""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        flags = next((line for line in cpuinfo.read_bytes().splitlines()
                      if line.startswith((b"flags", b"Features"))), b"")
    return platform.machine().encode() + b"\0" + flags
