"""A small GGUF parser: header, metadata and tensor table, with every read bounds-checked.

Layout (little-endian, version 2 or 3): "GGUF", version u32, tensor count u64, metadata
count u64; each metadata entry is a string key, a u32 value type and the value (arrays:
element type u32, count u64, elements); each tensor entry is a string name, u32 number of
dimensions, that many u64 sizes (fastest-varying first), u32 GGML type and u64 offset.
Tensor data starts at the next multiple of `general.alignment` (default 32).

Written here rather than taken from `gguf.GGUFReader` because that reader spends ~8 s
building numpy views of SmolLM2's 100k vocabulary strings and fails on truncated files
with unrelated numpy errors; the tests check that both agree on real and written files.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parrot.errors import ParrotError

# GGML type id → (name, weights per block, bytes per block).
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
}
# Metadata scalar type id → numpy dtype (8 = string, 9 = array are handled apart).
SCALARS = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "<u1",
           10: "<u8", 11: "<i8", 12: "<f8"}
STRING, ARRAY, BOOL = 8, 9, 7


@dataclass(frozen=True)
class TensorEntry:
    name: str
    qtype: str
    shape: tuple[int, ...]  # PyTorch order (slowest-varying first)
    start: int  # absolute byte offset in the file
    n_bytes: int


class _Cursor:
    """Reads values from a bytes-like buffer, raising ParrotError past its end."""

    def __init__(self, data: memoryview, where: str) -> None:
        self.data, self.pos, self.where = data, 0, where

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise ParrotError(f"{self.where} is truncated or corrupt (a header field runs past "
                              f"the end of the file at byte {self.pos}); download it again.")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.take(8))[0]

    def string(self) -> str:
        raw = self.take(self.u64())
        try:
            return str(raw, "utf-8")
        except UnicodeDecodeError:
            return bytes(raw).decode("utf-8", errors="replace")

    def value(self, kind: int) -> Any:
        if kind == STRING:
            return self.string()
        if kind == ARRAY:
            return self.array()
        if kind not in SCALARS:
            raise ParrotError(f"{self.where} has a metadata value of unknown type {kind}; "
                              "the file is corrupt.")
        item = np.frombuffer(self.take(np.dtype(SCALARS[kind]).itemsize), SCALARS[kind])[0]
        return bool(item) if kind == BOOL else item.item()

    def array(self) -> list[Any]:
        kind, count = self.u32(), self.u64()
        if kind in SCALARS:
            dtype = np.dtype(SCALARS[kind])
            values = np.frombuffer(self.take(count * dtype.itemsize), dtype).tolist()
            return [bool(v) for v in values] if kind == BOOL else values
        return [self.value(kind) for _ in range(count)]


def parse_gguf(path: Path) -> tuple[dict[str, Any], list[TensorEntry], np.memmap]:
    """(metadata, tensor table, memory map of the whole file); ParrotError when corrupt."""
    if Path(path).stat().st_size < 24:  # magic, version and the two counts
        raise ParrotError(f"{path} is too short to be a GGUF file; download it again.")
    data = np.memmap(path, dtype=np.uint8, mode="r")
    cursor = _Cursor(memoryview(data), str(path))
    if bytes(cursor.take(4)) != b"GGUF":
        raise ParrotError(f"{path} is not a GGUF file (it does not start with 'GGUF').")
    version = cursor.u32()
    if version not in (2, 3):
        raise ParrotError(f"{path} is GGUF version {version}; parrot reads versions 2 and 3.")
    n_tensors, n_kv = cursor.u64(), cursor.u64()
    metadata = {}
    for _ in range(n_kv):
        key = cursor.string()
        metadata[key] = cursor.value(cursor.u32())
    infos = [_tensor_info(cursor) for _ in range(n_tensors)]
    alignment = metadata.get("general.alignment", 32)
    if not isinstance(alignment, int) or isinstance(alignment, bool) or \
            not 1 <= alignment <= 1 << 20:
        raise ParrotError(f"{path} has general.alignment={alignment!r}; the file is corrupt.")
    base = -(-cursor.pos // alignment) * alignment
    tensors = [_entry(path, name, dims, kind, base + offset, len(data))
               for name, dims, kind, offset in infos]
    return metadata, tensors, data


def _tensor_info(cursor: _Cursor) -> tuple[str, list[int], int, int]:
    name = cursor.string()
    n_dims = cursor.u32()
    if n_dims > 8:
        raise ParrotError(f"{cursor.where} lists tensor {name!r} with {n_dims} dimensions; "
                          "the file is corrupt.")
    dims = [cursor.u64() for _ in range(n_dims)]
    return name, dims, cursor.u32(), cursor.u64()


def _entry(path: Path, name: str, dims: list[int], kind: int, start: int,
           size: int) -> TensorEntry:
    if kind not in GGML_TYPES:
        raise ParrotError(f"{path} stores {name} with unknown GGML type {kind}; the file is "
                          "corrupt or newer than parrot.")
    qtype, block, block_bytes = GGML_TYPES[kind]
    count = math.prod(dims)  # exact: numpy's int64 product wraps past 2^63
    n_bytes = count // block * block_bytes
    if count % block:
        raise ParrotError(f"{path} stores {name} with {count} weights, not a whole number of "
                          f"{qtype} blocks of {block}; the file is corrupt.")
    if start + n_bytes > size:
        raise ParrotError(f"{path} is truncated: tensor {name} ends at byte {start + n_bytes} "
                          f"but the file has {size}; download it again.")
    return TensorEntry(name, qtype, tuple(reversed(dims)), start, n_bytes)
