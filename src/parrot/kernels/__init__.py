"""parrot's own decode kernels, in C (`decode.c`), built on first use and called via ctypes.

A decode step reads every weight once and does little arithmetic; PyTorch's weight-only
CPU kernels want bfloat16 activations and read int8 weights at about half of what the
memory delivers, and the small steps around them (norms, RoPE, the cache write, attention
over the cache) cost more in fixed overhead than in work. `decode.c` does those in a few
calls: int8 weights times float32 activations, 4-bit weights times activations rounded
to int8 per group of 32 (llama.cpp's scheme), RMSNorm rows, and one-call decode attention.

`load(home, enabled, compiler)` compiles the library once per machine with the given C
compiler (else `cc` or `gcc`) into `home/kernels/` under a name that hashes the source,
the flags and the CPU, written atomically so parallel processes may race, and returns a
`Kernels` object, or None without a compiler or when not enabled: callers then use
PyTorch's kernels. Nothing here reads the environment; `settings_from(os.environ)` is
what the CLI passes. Every method checks its tensors (dtype, contiguity, shapes, slot
bounds) before a pointer reaches C.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import platform
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import torch  # loaded first, so the library joins PyTorch's OpenMP runtime (one pool)

from parrot.utils.atomic import atomic_path
from parrot.utils.home import home_from

__all__ = ["GROUP", "Kernels", "load", "settings_from"]

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
    "decode_attention": [_PTR] * 7 + [_I64] * 8 + [ctypes.c_float, _I64],
}


def settings_from(environ: Mapping[str, str]) -> dict[str, object]:
    """The keyword arguments of `load` (and of `prepare_for_inference`) that an
    environment asks for: `PARROT_NATIVE=0` disables the kernels, `PARROT_HOME` is where
    they are built, `CC` the compiler. Called by the CLI with `os.environ`."""
    return {"native": environ.get("PARROT_NATIVE", "1") != "0", "home": home_from(environ),
            "compiler": environ.get("CC") or None}


def load(home: Path, native: bool = True, compiler: str | None = None) -> Kernels | None:
    """The kernels built (once, cached under `home/kernels/`) with `compiler` (None: `cc`
    or `gcc` from PATH); None when not `native` or when they cannot be built (one warning).
    One object per (home, compiler) in a process."""
    return _load(Path(home), compiler) if native else None


@functools.cache
def _load(home: Path, compiler: str | None) -> Kernels | None:
    try:
        library = ctypes.CDLL(str(_build(home, compiler)))
    except (OSError, subprocess.SubprocessError) as error:
        _log.warning("parrot's C kernels are unavailable (%s); using PyTorch's.", error)
        return None
    for name, argtypes in _SIGNATURES.items():
        function = getattr(library, name)
        function.argtypes, function.restype = argtypes, ctypes.c_int
    return Kernels(library)


class Kernels:
    """The loaded library. Inputs are float32 CPU tensors unless stated; outputs are new
    float32 tensors. Each call uses torch's thread count (`torch.get_num_threads()`)."""

    def __init__(self, library: ctypes.CDLL) -> None:
        self._lib = library

    @staticmethod
    def _check_once(name: str, t: torch.Tensor, dtype: torch.dtype,
                    shape: tuple[int | None, ...] | None = None) -> None:
        """`_check`, remembered on the tensor: weights (and a step's RoPE tables, shared
        by every layer) are checked on first use, not on each of thousands of calls."""
        if getattr(t, "_parrot_checked", None) != (dtype, shape):
            _check(name, t, dtype, shape)
            t._parrot_checked = (dtype, shape)

    def __deepcopy__(self, memo: dict) -> Kernels:
        return self  # one loaded library per process: a copied model shares it

    def matvec_int8(self, x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """x (rows, in) @ (q * scale[:, None]).T -> (rows, out).

        q (out, in) int8, scale (out,); all contiguous; in a multiple of GROUP.
        """
        self._check_once("q", q, torch.int8, (None, None))
        (out, width), rows = q.shape, _rows(x, q.shape[1])
        self._check_once("scale", scale, torch.float32, (out,))
        y = torch.empty(rows, out, dtype=torch.float32)
        _call(self._lib.matvec_int8, x, q, scale, y, rows, out, width, torch.get_num_threads())
        return y

    def matvec_int4(self, x: torch.Tensor, codes: torch.Tensor, scale: torch.Tensor,
                    offset: torch.Tensor) -> torch.Tensor:
        """x (rows, in) @ W.T with W = code * scale + offset per group of 32 inputs, the
        activations rounded to int8 per group inside (as llama.cpp does) -> (rows, out).

        codes (out, in / 2) uint8, two 4-bit codes per byte in llama.cpp's group layout
        (`parrot.adapt.quantize.pack_nibbles`); scale, offset (out, in / 32).
        """
        self._check_once("codes", codes, torch.uint8, (None, None))
        out, width = codes.shape[0], 2 * codes.shape[1]
        rows = _rows(x, width)
        self._check_once("scale", scale, torch.float32, (out, width // GROUP))
        self._check_once("offset", offset, torch.float32, (out, width // GROUP))
        y = torch.empty(rows, out, dtype=torch.float32)
        _call(self._lib.matvec_int4, x, codes, scale, offset, y, rows, out, width,
              torch.get_num_threads())
        return y

    def rms_norm_rows(self, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        """x / sqrt(mean(x^2) + eps) * weight over the last dimension; x contiguous, any
        number of dimensions; weight (dim,). No autograd: for inference."""
        _check("x", x, torch.float32)
        dim = x.shape[-1]
        self._check_once("weight", weight, torch.float32, (dim,))
        y = torch.empty_like(x)
        _call(self._lib.rms_norm_rows, x, weight, y, x.numel() // max(dim, 1), dim, eps)
        return y

    def decode_attention(self, qkv: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None,
                         positions: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                         heads: int, kv_heads: int, window: int | None, scale: float
                         ) -> torch.Tensor:
        """Attention for one new token per row, reading and extending a KV cache in place.

        qkv (rows, (heads + 2 kv_heads) * D) contiguous: the fused projection of the new
        tokens; rope: tables (cos, sin) from `parrot.model.positions.rope_angles`, each
        with rows * D values, or None; positions (rows,) integers: each token's slot, in
        0..S-1; keys, values: one layer of the cache, (rows, kv_heads, S, D) with
        contiguous slots (a row or length view of a larger cache is fine). Each row
        attends to its slots 0..position (the last `window` of them if given).
        Returns (rows, heads * D).
        """
        rows, _, slots, head_dim = _cache_layer(keys, values, kv_heads)
        if heads % kv_heads or qkv.shape != (rows, (heads + 2 * kv_heads) * head_dim):
            raise ValueError(f"qkv must be ({rows}, {(heads + 2 * kv_heads) * head_dim}) for "
                             f"{heads} heads over {kv_heads} kv heads, got {tuple(qkv.shape)}.")
        _check("qkv", qkv, torch.float32)
        positions = positions.reshape(-1).to(torch.int64).contiguous()  # C reads int64
        low, high = positions.aminmax() if rows else (0, 0)
        if positions.shape != (rows,) or not 0 <= int(low) <= int(high) < slots:
            raise ValueError(f"positions must be {rows} slot numbers in 0..{slots - 1}.")
        cos = sin = None
        if rope is not None:
            cos, sin = (t.contiguous() for t in rope)
            for name, table in (("cos", cos), ("sin", sin)):
                self._check_once(name, table, torch.float32)
                if table.numel() != rows * head_dim:
                    raise ValueError(f"rope {name} must hold {rows * head_dim} values.")
        out = torch.empty(rows, heads * head_dim, dtype=torch.float32)
        _call(self._lib.decode_attention, qkv, cos, sin, positions, keys, values, out, rows,
              heads, kv_heads, head_dim, slots, keys.stride(0), keys.stride(1), window or 0,
              scale, torch.get_num_threads())
        return out


def _check(name: str, t: torch.Tensor, dtype: torch.dtype,
           shape: tuple[int | None, ...] | None = None) -> None:
    """ValueError unless t is a contiguous CPU tensor of `dtype` (and `shape`, where None
    stands for any size)."""
    if not isinstance(t, torch.Tensor) or t.dtype != dtype or not t.is_cpu:
        raise ValueError(f"{name} must be a {dtype} CPU tensor, got "
                         f"{getattr(t, 'dtype', type(t).__name__)}.")
    if not t.is_contiguous():
        raise ValueError(f"{name} must be contiguous; call .contiguous() first.")
    if shape is not None and (t.dim() != len(shape) or any(
            want not in (None, got) for want, got in zip(shape, t.shape, strict=True))):
        raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}.")


def _rows(x: torch.Tensor, width: int) -> int:
    """The rows of activations x (rows, width), width a multiple of GROUP."""
    _check("x", x, torch.float32, (None, width))
    if width % GROUP:
        raise ValueError(f"x must have a multiple of {GROUP} columns, got {width}.")
    return x.shape[0]


def _cache_layer(keys: torch.Tensor, values: torch.Tensor,
                 kv_heads: int) -> tuple[int, int, int, int]:
    """(rows, kv_heads, slots, head_dim) of one cache layer, whose slots must be contiguous."""
    for name, t in (("keys", keys), ("values", values)):
        if t.dtype != torch.float32 or t.device.type != "cpu" or t.dim() != 4:
            raise ValueError(f"{name} must be a float32 CPU tensor (rows, kv_heads, slots, D).")
        if t.shape[1] != kv_heads or t.stride(3) != 1 or t.stride(2) != t.shape[3]:
            raise ValueError(f"{name} must hold {kv_heads} kv heads of contiguous slots.")
    if keys.shape != values.shape or keys.stride() != values.stride():
        raise ValueError("keys and values must have the same shape and layout.")
    return tuple(keys.shape)


def _call(function: ctypes._CFuncPtr, *args: object) -> None:
    """Call C with tensors as pointers; its nonzero status means an allocation failed."""
    pointers = [a.data_ptr() if isinstance(a, torch.Tensor) else a for a in args]
    if function(*pointers) != 0:
        raise MemoryError(f"parrot's {function.__name__} kernel could not allocate memory.")


def _build(home: Path, compiler: str | None) -> Path:
    """The compiled library, built now unless a matching one is cached."""
    compiler = compiler or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise OSError("no C compiler found (set CC or install gcc)")
    source = SOURCE.read_bytes()
    version = subprocess.run([compiler, "--version"], capture_output=True, check=True,
                             timeout=60).stdout
    key = hashlib.sha256(b"\0".join([source, " ".join(FLAGS).encode(), version,
                                     _cpu_signature()])).hexdigest()[:16]
    target = home / "kernels" / f"decode-{key}.so"
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
