"""Token shards: text is tokenized once and stored as flat `.npy` arrays of token ids.

Training reads the arrays memory-mapped, so a corpus larger than memory costs nothing to
open and every random window is a slice. Ids are stored as uint16 when the vocabulary fits
in 16 bits (half the disk and page-cache of uint32), otherwise uint32.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from parrot.errors import ParrotError
from parrot.utils.atomic import atomic_path


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """uint16 for vocabularies up to 65536 ids, uint32 up to 2**32."""
    if vocab_size <= 2**16:
        return np.dtype(np.uint16)
    if vocab_size <= 2**32:
        return np.dtype(np.uint32)
    raise ParrotError(f"A vocabulary of {vocab_size} ids does not fit in uint32 shards.")


def split_documents(texts: Sequence[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """Keep the first documents for training and the last `val_fraction` (at least one) for
    validation; a single document is split by characters instead."""
    texts = list(texts)
    if len(texts) < 2:
        return split_chars(texts, val_fraction)
    n_val = min(len(texts) - 1, max(1, round(len(texts) * val_fraction)))
    return texts[: len(texts) - n_val], texts[len(texts) - n_val :]


def split_chars(texts: Sequence[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """Concatenate the texts and cut at character  floor(n * (1 - val_fraction))."""
    joined = "".join(texts)
    cut = int(len(joined) * (1.0 - val_fraction))
    return [joined[:cut]], [joined[cut:]]


def encode_documents(
    texts: Sequence[str], encode: Callable[[str], list[int]], separator: int | None, dtype: np.dtype
) -> np.ndarray:
    """Token ids of every text, in order, with `separator` (e.g. EOS) after each one if given."""
    tail = [] if separator is None else [separator]
    parts = [np.asarray([*encode(text), *tail], dtype=dtype) for text in texts]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def write_shard(path: str | Path, ids: np.ndarray) -> Path:
    """Write a 1-D id array as `.npy`, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, ids)
    return path


def open_shard(path: str | Path) -> np.ndarray:
    """Memory-map a shard written by `write_shard` (read-only)."""
    path = Path(path)
    if not path.is_file():
        raise ParrotError(f"Token shard {path} does not exist; rebuild the data for this run.")
    return np.load(path, mmap_mode="r")


def split_texts(
    texts: Sequence[str], val_fraction: float, split: str = "documents"
) -> tuple[list[str], list[str]]:
    """Train and validation texts: by documents or by a character fraction ("chars")."""
    if split == "chars":
        return split_chars(texts, val_fraction)
    return split_documents(texts, val_fraction)


def build_shards(
    train_texts: Sequence[str],
    val_texts: Sequence[str],
    encode: Callable[[str], list[int]],
    vocab_size: int,
    out_dir: str | Path,
    separator: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Tokenize and store `train.npy` / `val.npy` in `out_dir`; return them memory-mapped."""
    dtype = dtype_for_vocab(vocab_size)
    out_dir = Path(out_dir)
    for name, part in (("train", train_texts), ("val", val_texts)):
        write_shard(out_dir / f"{name}.npy", encode_documents(part, encode, separator, dtype))
    return open_shard(out_dir / "train.npy"), open_shard(out_dir / "val.npy")
