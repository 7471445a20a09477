"""Mixture-of-experts balancing as a loop hook (added for any model with MoE layers).

After each optimizer step the loss-free layers move their selection bias
(`update_balance_bias`, loads summed over ranks). Every logged row gets
    "expert_load":  per layer, the fraction of top-k assignments each expert received
                    over the steps since the last log (each list sums to 1),
    "load_entropy": per layer, -sum_i f_i ln f_i of those fractions (max ln n_experts).
`parrot.viz.experts` draws these rows.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from parrot.model.moe import expert_loads, load_entropy, moe_layers, update_balance_bias
from parrot.training.distributed import mean_across_ranks
from parrot.training.loop import Hook, Loop, LoopState


def moe_row(model: nn.Module) -> dict[str, Any]:
    """The expert-load fields for a metrics row ({} for a model without MoE layers).

    Reading them resets the loads accumulated since the previous row.
    """
    if not moe_layers(model):
        return {}
    loads = expert_loads(model, reset=True)
    return {"expert_load": [[round(float(f), 6) for f in load] for load in loads],
            "load_entropy": [round(load_entropy(load), 6) for load in loads]}


class MoEBalance(Hook):
    """Bias updates after each step and expert loads in each logged row."""

    def after_step(self, loop: Loop, state: LoopState) -> None:
        # Only the ratio to the mean load matters, so the mean over ranks serves as the sum.
        update_balance_bias(loop.raw, lambda load: mean_across_ranks(load, loop.dist))

    def row(self, loop: Loop) -> dict[str, Any]:
        return moe_row(loop.raw)


def balance_hooks(model: nn.Module) -> list[Hook]:
    """[MoEBalance()] for a model with MoE layers, else []."""
    return [MoEBalance()] if moe_layers(model) else []
