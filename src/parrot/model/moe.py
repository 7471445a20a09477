"""Mixture of experts: a drop-in replacement for the MLP that routes each token to k experts.

    h = W_r x,   p = softmax(h),   S = top-k(p + b),   y = sum_{i in S} w_i E_i(x)  (+ shared)

w_i = p_i, or p_i / sum_{j in S} p_j when `moe_renormalize`. b is the loss-free balancing
bias (DeepSeek): it steers which experts are chosen but never scales their outputs.

Each expert is an `MLP` module (gated or plain per `cfg.mlp`), so parameter names stay
`mlp.experts.{e}.{gate,up,down}_proj` and LoRA targets match them by name. Dispatch is
grouped: the (token, slot) assignments are sorted by expert and every expert runs once on
exactly its tokens; no expert ever sees a token that was not routed to it.

Statistics leave the model without changing `forward -> logits`. This is a documented
exception to "no state on modules" (like BatchNorm's running statistics): each `MoE`
layer keeps its last forward's auxiliary loss (training mode only, with gradient) and
expert counts, and in training mode accumulates counts for the current optimizer step and
for the current logging window. The helpers `moe_aux_loss`, `update_balance_bias` and
`expert_loads` read them from outside. The bias `balance_bias` is a persistent buffer, so
checkpoints and `model.safetensors` carry it and a resumed run continues bit-exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from parrot.model.config import ModelConfig
from parrot.model.mlp import MLP


def router_probs(logits: torch.Tensor) -> torch.Tensor:
    """p = softmax(h), computed in at least fp32 (bf16 router logits are upcast first)."""
    wide = logits.dtype if logits.dtype == torch.float64 else torch.float32
    return F.softmax(logits.to(wide), dim=-1)


def top_k_route(probs: torch.Tensor, bias: torch.Tensor | None, k: int,
                renormalize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick k experts per token: S = top-k(p + b); weights w_i = p_i (i in S).

    With `renormalize`, w_i = p_i / sum_{j in S} p_j. probs (N, E) -> (weights (N, k),
    indices (N, k)). The bias only changes which experts are chosen.
    """
    scores = probs if bias is None else probs + bias
    indices = torch.topk(scores, k, dim=-1).indices
    weights = probs.gather(-1, indices)
    if renormalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights, indices


def expert_counts(indices: torch.Tensor, n_experts: int) -> torch.Tensor:
    """How many (token, slot) assignments went to each expert: (N, k) -> (E,) float."""
    return torch.bincount(indices.flatten(), minlength=n_experts).float()


def aux_balance_loss(probs: torch.Tensor, indices: torch.Tensor, coef: float) -> torch.Tensor:
    """Switch/GShard auxiliary loss  alpha * N * sum_i f_i * P_i.

    f_i = share of the N*k top-k assignments that went to expert i (no gradient);
    P_i = mean over tokens of the router probability p_i (carries the gradient).
    Perfect balance gives alpha; everything on one expert with p = 1 gives alpha * N.
    """
    n_experts = probs.shape[-1]
    f = expert_counts(indices, n_experts) / indices.numel()
    return coef * n_experts * (f * probs.mean(dim=0)).sum()


def balance_bias_step(bias: torch.Tensor, load: torch.Tensor, rate: float) -> torch.Tensor:
    """Loss-free balancing update  b_i + u * sign(mean_j load_j - load_i).

    Overloaded experts (load above the mean) become less likely to be picked.
    """
    return bias + rate * torch.sign(load.mean() - load)


def load_entropy(load: torch.Tensor) -> float:
    """Entropy of the load fractions f = load / sum(load):  -sum_i f_i ln f_i  (0 ln 0 = 0).

    ln(E) for perfectly even load over E experts, 0 when one expert takes everything.
    """
    total = float(load.sum())
    if total <= 0:
        return 0.0
    f = load.double() / total
    return float(-(f * torch.log(f.clamp_min(1e-300))).sum())


def grouped_dispatch(x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor,
                     experts: nn.ModuleList) -> torch.Tensor:
    """y_t = sum_j weights[t, j] * E_{indices[t, j]}(x_t), each expert run once on its rows.

    x (N, D); indices, weights (N, k). The N*k assignments are sorted by expert (stable,
    so token order is kept inside each group), gathered with index_select, and each
    expert's weighted output is scattered back with index_add_.
    """
    k = indices.shape[1]
    flat = indices.flatten()
    order = torch.argsort(flat, stable=True)
    rows = order // k                                           # token of each assignment
    sizes = torch.bincount(flat, minlength=len(experts)).tolist()
    inputs = x.index_select(0, rows)                            # (N*k, D), grouped
    scale = weights.flatten().index_select(0, order).unsqueeze(-1).to(x.dtype)
    out = torch.zeros_like(x)
    start = 0
    for expert, size in zip(experts, sizes, strict=True):
        if size:
            part = slice(start, start + size)
            out.index_add_(0, rows[part], expert(inputs[part]) * scale[part])
        start += size
    return out


class MoE(nn.Module):
    """Router + n_experts MLPs (+ optional shared experts, optionally sigmoid-gated)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_experts, self.top_k = cfg.n_experts, cfg.experts_per_token
        self.renormalize, self.balance = cfg.moe_renormalize, cfg.moe_balance
        self.aux_coef, self.bias_rate = cfg.moe_aux_coef, cfg.moe_bias_rate
        self.router = nn.Linear(cfg.d_model, cfg.n_experts, bias=False)
        # Each expert is a dense MLP of its own width.
        width = cfg.expert_d_ff or cfg.ff_size
        self.experts = nn.ModuleList(MLP(cfg.replace(d_ff=width, n_experts=0))
                                     for _ in range(cfg.n_experts))
        # Several shared experts are always all on: one MLP of their summed width.
        shared_width = cfg.shared_experts * (cfg.shared_d_ff or width)
        self.shared = (MLP(cfg.replace(d_ff=shared_width, n_experts=0))
                       if cfg.shared_experts else None)
        gate = cfg.shared_experts and cfg.shared_expert_gate
        self.shared_gate = nn.Linear(cfg.d_model, 1, bias=False) if gate else None
        self.register_buffer("balance_bias", torch.zeros(cfg.n_experts))
        self.aux_loss: torch.Tensor | None = None
        self.last_load: torch.Tensor | None = None
        self.step_load: torch.Tensor | None = None
        self.window_load: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., d_model) -> (..., d_model)."""
        flat = x.reshape(-1, x.shape[-1])                                # (N, D)
        probs = router_probs(self.router(flat))                          # (N, E)
        bias = self.balance_bias if self.balance == "loss_free" else None
        weights, indices = top_k_route(probs, bias, self.top_k, self.renormalize)
        out = grouped_dispatch(flat, indices, weights, self.experts)
        if self.shared is not None:
            shared = self.shared(flat)
            if self.shared_gate is not None:
                shared = torch.sigmoid(self.shared_gate(flat)) * shared
            out = out + shared
        self._record(probs, indices)
        return out.reshape(x.shape)

    def _record(self, probs: torch.Tensor, indices: torch.Tensor) -> None:
        """Keep this forward's statistics (see the module docstring)."""
        counts = expert_counts(indices.detach(), self.n_experts)
        self.last_load = counts
        if not self.training:
            self.aux_loss = None
            return
        self.aux_loss = (aux_balance_loss(probs, indices, self.aux_coef)
                         if self.balance == "aux_loss" else None)
        self.step_load = counts if self.step_load is None else self.step_load + counts
        self.window_load = counts if self.window_load is None else self.window_load + counts


def moe_layers(model: nn.Module) -> list[MoE]:
    """The MoE layers of `model` (also through DDP or torch.compile wrappers), in order."""
    return [m for m in model.modules() if isinstance(m, MoE)]


def moe_aux_loss(model: nn.Module) -> torch.Tensor | None:
    """Sum of the auxiliary losses of the last training forward (None when there are none)."""
    losses = [m.aux_loss for m in moe_layers(model) if m.aux_loss is not None]
    return torch.stack(losses).sum() if losses else None


Reduce = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def update_balance_bias(model: nn.Module, reduce: Reduce | None = None) -> None:
    """End of an optimizer step: loss-free layers update their bias from the step's load.

    `reduce` sums a load tensor over data-parallel ranks so every rank applies the same
    update. The step's counts are cleared in every MoE layer, loss-free or not.
    """
    for layer in moe_layers(model):
        load, layer.step_load = layer.step_load, None
        if layer.balance != "loss_free" or load is None or layer.bias_rate == 0:
            continue
        load = reduce(load) if reduce is not None else load
        layer.balance_bias.copy_(balance_bias_step(layer.balance_bias, load, layer.bias_rate))


def expert_loads(model: nn.Module, reset: bool = True) -> list[torch.Tensor]:
    """Per layer, the load fractions (E,) accumulated in training since the last reset.

    A layer with no training forward since then reports its last forward's load.
    """
    loads = []
    for layer in moe_layers(model):
        counts = layer.window_load if layer.window_load is not None else layer.last_load
        if counts is None:
            counts = torch.zeros(layer.n_experts)
        total = float(counts.sum())
        loads.append(counts.detach().cpu() / total if total else counts.detach().cpu())
        if reset:
            layer.window_load = None
    return loads
