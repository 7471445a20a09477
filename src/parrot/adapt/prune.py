"""Remove attention heads: a smaller config and the weights cut to match.

A head owns head_dim rows of q_proj (and of k_proj/v_proj for its key/value head) and
head_dim columns of o_proj; removing it deletes those slices, which computes exactly what
the unpruned model computes with that head's gate xi_h = 0 (tests check this).

Grouped-query attention shares one key/value head among n_heads / n_kv_heads query heads,
and every layer of a `ModelConfig` (and of a Hugging Face config) has the same head
counts. So pruning removes the same number of heads in every layer, in one of two units:

  - "group": whole KV groups (a key/value head and all the query heads reading it); a
    group's importance is the sum of its query heads'. The KV cache shrinks too.
  - "query": query heads inside each group, the same number from every group (so the
    query heads per group stay equal); the key/value heads all stay.
  - "auto" (the default): "query" when groups hold more than one query head, else "group"
    (multi-head attention: each group is one head, the two are the same thing).

Which heads go is chosen per layer from an importance tensor (n_layers, n_heads): the
least important ones. A random order is the baseline a study compares against.
"""

from __future__ import annotations

import torch
from torch import nn

from parrot.errors import ParrotError
from parrot.model.config import ModelConfig

UNITS = ("auto", "group", "query")


def check_fraction(fraction: float) -> None:
    """ParrotError unless 0 < fraction < 1."""
    if not 0.0 < fraction < 1.0:
        raise ParrotError(f"The fraction of heads to prune must lie strictly between 0 and 1 "
                          f"(e.g. 0.3), got {fraction}.")


def resolve_unit(cfg: ModelConfig, unit: str) -> str:
    if unit not in UNITS:
        raise ParrotError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}.")
    if unit == "auto":
        return "query" if cfg.n_heads // cfg.kv_heads > 1 else "group"
    return unit


def heads_to_keep(cfg: ModelConfig, importance: torch.Tensor, fraction: float,
                  unit: str = "auto") -> list[list[int]]:
    """Per layer, the sorted query-head indices kept (the same count in every layer).

    The count removed is round(fraction * units), units being KV groups or query heads
    per group; a fraction that rounds to none or to all is a ParrotError saying which
    fractions this model allows.
    """
    check_fraction(fraction)
    unit = resolve_unit(cfg, unit)
    n_groups, rep = cfg.kv_heads, cfg.n_heads // cfg.kv_heads
    units = n_groups if unit == "group" else rep
    drop = round(fraction * units)
    if not 1 <= drop < units:
        raise ParrotError(f"Pruning {fraction} of heads by {unit} removes {drop} of {units} "
                          f"{'KV groups' if unit == 'group' else 'query heads per group'}; "
                          f"choose a fraction between {1 / units:.2f} and "
                          f"{(units - 1) / units:.2f}" + (" or --unit query." if unit ==
                                                          "group" and rep > 1 else "."))
    keep = []
    for scores in importance.view(cfg.n_layers, n_groups, rep).float():  # (G, rep)
        if unit == "group":
            groups = scores.sum(-1).argsort(descending=True)[: n_groups - drop].sort().values
            keep.append([int(g) * rep + r for g in groups for r in range(rep)])
        else:
            inner = scores.argsort(dim=-1, descending=True)[:, : rep - drop].sort(-1).values
            keep.append([g * rep + int(r) for g in range(n_groups) for r in inner[g]])
    return keep


def pruned_config(cfg: ModelConfig, kept_heads: int, kept_groups: int) -> ModelConfig:
    """The config with fewer heads; head_dim is written out (it was d_model / n_heads)."""
    if cfg.positions == "alibi":
        raise ParrotError("ALiBi's slopes depend on the number of heads, so pruning would "
                          "change what every remaining head computes; prune a RoPE or "
                          "learned-position model.")
    kv = None if cfg.n_kv_heads is None and kept_groups == kept_heads else kept_groups
    return cfg.replace(n_heads=kept_heads, n_kv_heads=kv, head_dim=cfg.head_size)


def _head_index(heads: list[int], head_dim: int) -> torch.Tensor:
    """The row indices of `heads` in a (n * head_dim, d) projection."""
    return torch.tensor([h * head_dim + i for h in heads for i in range(head_dim)])


def prune_heads(model: nn.Module, keep: list[list[int]]) -> nn.Module:
    """A new decoder of `pruned_config` keeping query heads `keep[layer]` and the KV
    heads they read: q/k/v rows and o_proj columns sliced, every other tensor copied."""
    cfg = model.config
    rep, d = cfg.n_heads // cfg.kv_heads, cfg.head_size
    groups = [sorted({h // rep for h in heads}) for heads in keep]
    if len({len(k) for k in keep}) != 1 or len({len(g) for g in groups}) != 1:
        raise ParrotError("Every layer must keep the same number of heads and KV groups.")
    new_cfg = pruned_config(cfg, len(keep[0]), len(groups[0]))
    state = model.state_dict()
    for layer, (heads, kv) in enumerate(zip(keep, groups, strict=True)):
        prefix, q_rows, kv_rows = f"blocks.{layer}.attn.", _head_index(heads, d), \
            _head_index(kv, d)
        for name, rows in (("q_proj", q_rows), ("k_proj", kv_rows), ("v_proj", kv_rows)):
            for kind in ("weight", "bias"):
                key = f"{prefix}{name}.{kind}"
                if key in state:
                    state[key] = state[key][rows]
        state[f"{prefix}o_proj.weight"] = state[f"{prefix}o_proj.weight"][:, q_rows]
    pruned = type(model)(new_cfg)
    pruned.load_state_dict({k: v.clone() for k, v in state.items()})
    return pruned.to(next(model.parameters()).device).eval()


def random_importance(cfg: ModelConfig, seed: int) -> torch.Tensor:
    """Random scores (n_layers, n_heads): pruning by them is the random-order baseline."""
    return torch.rand(cfg.n_layers, cfg.n_heads, generator=torch.Generator().manual_seed(seed))
