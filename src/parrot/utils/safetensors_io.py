"""Reading `.safetensors` files with every failure as one ParrotError.

The format cannot run code (a JSON header, then raw tensor bytes), and the library checks
the header against the file: each tensor's dtype and shape must account for exactly its
byte range, and every range must lie inside the file, so a header that claims 2^60
elements is refused before anything is allocated. What it raises (`SafetensorError`) is
turned here into a sentence naming the file.
"""

from __future__ import annotations

from pathlib import Path

import torch

from parrot.errors import ParrotError


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of one .safetensors file, on the CPU."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, TypeError) as err:
        detail = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise ParrotError(f"{path} is not a readable safetensors file ({detail}); download "
                          "or export it again.") from None
