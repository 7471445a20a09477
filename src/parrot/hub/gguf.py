"""Reading GGUF files: metadata and raw tensors, checked before anything is trusted.

GGUF (llama.cpp's format) is a header, key/value metadata, a table of tensors (name,
GGML type, dimensions, offset) and the tensor data. `gguf_parse.py` reads the layout with
every read bounds-checked, so a truncated or corrupt file is one clear `ParrotError`.

Dimensions: GGUF lists them fastest-varying first (ne[0] = columns); `GGUFTensor.shape`
is the PyTorch order, (rows, columns).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from parrot.errors import ParrotError
from parrot.hub.dequant import FORMATS, dequantize
from parrot.hub.gguf_parse import parse_gguf

# llama.cpp's `llama_ftype` values: what a whole file was quantized to.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 32: "BF16",
}


@dataclass(frozen=True)
class GGUFTensor:
    name: str
    qtype: str  # GGML type name: "F32", "Q4_1", ...
    shape: tuple[int, ...]  # PyTorch order
    raw: np.ndarray  # the bytes as stored (a view into the memory-mapped file)

    def dequantize(self) -> torch.Tensor:
        """The float32 weights of this tensor."""
        return torch.from_numpy(dequantize(self.raw, self.qtype, self.shape))


@dataclass(frozen=True)
class GGUFFile:
    path: Path
    metadata: dict[str, Any]
    tensors: dict[str, GGUFTensor]

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))

    def arch_value(self, key: str, default: Any = None) -> Any:
        """`<architecture>.<key>` from the metadata, e.g. arch_value("block_count")."""
        return self.metadata.get(f"{self.architecture}.{key}", default)

    def quantization(self) -> str:
        """The file's declared type (`general.file_type`, e.g. "Q4_K_M"), else the most
        common type among the 2-D tensors (mixed files such as Q4_K_M store many types)."""
        declared = FILE_TYPES.get(self.metadata.get("general.file_type", -1))
        if declared is not None:
            return declared
        kinds = [t.qtype for t in self.tensors.values() if len(t.shape) == 2]
        return max(set(kinds), key=kinds.count) if kinds else "none"

    def num_parameters(self) -> int:
        return sum(int(np.prod(t.shape)) for t in self.tensors.values())


def read_gguf(path: str | Path) -> GGUFFile:
    """Open and validate a GGUF file; ParrotError when it is missing, truncated or corrupt.

    Tensor data stays in the memory-mapped file until a tensor is dequantized.
    """
    path = Path(path)
    if not path.is_file():
        raise ParrotError(f"No GGUF file at {path}.")
    if path.stat().st_size < 24:
        raise ParrotError(f"{path} is too short to be a GGUF file; download it again.")
    metadata, entries, data = parse_gguf(path)
    tensors = {e.name: GGUFTensor(e.name, e.qtype, e.shape, data[e.start:e.start + e.n_bytes])
               for e in entries}
    return GGUFFile(path, metadata, tensors)


def check_supported(gguf_file: GGUFFile) -> None:
    """ParrotError naming the first tensor whose type parrot cannot dequantize."""
    for tensor in gguf_file.tensors.values():
        if tensor.qtype not in FORMATS:
            raise ParrotError(
                f"{gguf_file.path.name} stores {tensor.name} as {tensor.qtype}, which parrot "
                f"cannot read yet (supported: {', '.join(FORMATS)}).")
