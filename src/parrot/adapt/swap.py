"""The one way parrot changes a finished model from outside: swap some of its modules.

Quantization, LoRA, QLoRA's frozen int8 base and inference preparation (fusion, native
kernels) all replace submodules in place; `replace_modules` is the loop they share.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def replace_modules(model: nn.Module, select: Callable[[str, nn.Module], bool],
                    make: Callable[[str, nn.Module], nn.Module]) -> list[str]:
    """Replace, in place, every submodule `m` named `name` with `select(name, m)` true by
    `make(name, m)`; returns the replaced names in model order.

    The candidates are listed before anything is swapped, so a replacement that holds the
    original (a LoRA wrapper around its Linear) is not visited again.
    """
    chosen = [(name, module) for name, module in model.named_modules()
              if name and select(name, module)]
    for name, module in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, make(name, module))
    return [name for name, _ in chosen]
