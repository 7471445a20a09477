"""Preference objectives: a reward model's Bradley–Terry loss and DPO.

Bradley–Terry (reward model r):

    loss = -mean log σ(r(x, y_w) - r(x, y_l))

DPO (Rafailov et al. 2023), with the log-ratios ρ_w = log π(y_w|x) - log π_ref(y_w|x) and
ρ_l likewise, and z = ρ_w - ρ_l:

    sigmoid   loss = -log σ(β z)
    cDPO      loss = -(1 - ε) log σ(β z) - ε log σ(-β z)    (label smoothing ε: the
              ranking is taken to be flipped with probability ε; ε = 0 is plain DPO)
    ipo       loss = (z̄ - 1 / (2β))^2,  z̄ = ρ_w / |y_w| - ρ_l / |y_l|   (IPO, Azar et
              al. 2023, on per-token log-ratios as TRL computes it)

At initialisation π = π_ref, so z = 0 and the sigmoid loss is log 2. The logged metrics
carry TRL's names: rewards/chosen = mean β ρ_w (DPO's implicit reward), rewards/rejected
= mean β ρ_l, rewards/margins = their mean difference, rewards/accuracies = the share of
pairs with β ρ_w > β ρ_l, logps/chosen and logps/rejected = mean log π(y|x).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from parrot.data.preference import PreferenceBatch
from parrot.errors import ParrotError
from parrot.training.logprobs import batch_logprobs

DPO_LOSSES = ("sigmoid", "ipo")


@dataclass(frozen=True)
class DPOConfig:
    """beta > 0 scales the implicit reward (how far the policy may move from the
    reference); loss sigmoid or ipo; label_smoothing ε in [0, 0.5) (sigmoid only)."""

    beta: float = 0.1
    loss: str = "sigmoid"
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if not self.beta > 0:
            raise ParrotError(f"--beta must be positive (it scales the implicit reward), "
                              f"got {self.beta}.")
        if self.loss not in DPO_LOSSES:
            raise ParrotError(f"--loss must be one of {', '.join(DPO_LOSSES)}, got "
                              f"{self.loss!r}.")
        if not 0 <= self.label_smoothing < 0.5:
            raise ParrotError(f"--label-smoothing must lie in [0, 0.5), got "
                              f"{self.label_smoothing}.")
        if self.label_smoothing and self.loss != "sigmoid":
            raise ParrotError("--label-smoothing applies to the sigmoid loss only; drop it or "
                              "use --loss sigmoid.")


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """-mean log σ(r_w - r_l) over pairs; rewards (B,)."""
    return -F.logsigmoid(r_chosen - r_rejected).mean()


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
             ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, cfg: DPOConfig,
             chosen_tokens: torch.Tensor | None = None,
             rejected_tokens: torch.Tensor | None = None) -> torch.Tensor:
    """The mean DPO loss over pairs (see the module docstring); log-probs (B,) each,
    completion token counts (B,) for IPO."""
    rho_w, rho_l = policy_chosen - ref_chosen, policy_rejected - ref_rejected
    if cfg.loss == "ipo":
        if chosen_tokens is None or rejected_tokens is None:
            raise ValueError("IPO needs the completion token counts")
        z = rho_w / chosen_tokens.clamp(min=1) - rho_l / rejected_tokens.clamp(min=1)
        return ((z - 1 / (2 * cfg.beta)) ** 2).mean()
    z = cfg.beta * (rho_w - rho_l)
    eps = cfg.label_smoothing
    return (-(1 - eps) * F.logsigmoid(z) - eps * F.logsigmoid(-z)).mean()


def dpo_metrics(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
                ref_chosen: torch.Tensor, ref_rejected: torch.Tensor,
                beta: float) -> dict[str, torch.Tensor]:
    """TRL's DPO metrics (detached means over the pairs)."""
    chosen = beta * (policy_chosen - ref_chosen).detach()
    rejected = beta * (policy_rejected - ref_rejected).detach()
    return {"rewards/chosen": chosen.mean(), "rewards/rejected": rejected.mean(),
            "rewards/margins": (chosen - rejected).mean(),
            "rewards/accuracies": (chosen > rejected).float().mean(),
            "logps/chosen": policy_chosen.detach().mean(),
            "logps/rejected": policy_rejected.detach().mean()}


def make_dpo_objective(cfg: DPOConfig):
    """objective(model, batch) for the training loop: the policy's log-probs of a batch
    whose `ref` holds the cached reference log-probs."""
    def dpo(model: nn.Module, batch: PreferenceBatch) -> tuple[torch.Tensor, dict]:
        if batch.ref is None:
            raise ValueError("a DPO batch needs the reference log-probs (batch.ref)")
        pc, pr = batch_logprobs(model, batch).chunk(2)
        rc, rr = batch.ref.to(pc.dtype).chunk(2)
        nc, nr = batch.mask.sum(-1).chunk(2)
        loss = dpo_loss(pc, pr, rc, rr, cfg, nc, nr)
        return loss, {"loss": loss.detach(), **dpo_metrics(pc, pr, rc, rr, cfg.beta)}
    return dpo


def reward_pairs(model: nn.Module, batch: PreferenceBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(r(x, y_w), r(x, y_l)), (B,) each: one forward of a `RewardModel` over the 2B rows."""
    return model(batch.tokens, batch.lengths).chunk(2)


def bradley_terry(model: nn.Module, batch: PreferenceBatch) -> tuple[torch.Tensor, dict]:
    """The reward model's objective; metrics accuracy (share of pairs ranked right),
    margin and the mean rewards of chosen and rejected answers."""
    r_w, r_l = reward_pairs(model, batch)
    loss = bradley_terry_loss(r_w, r_l)
    return loss, {"loss": loss.detach(), "accuracy": (r_w > r_l).float().mean().detach(),
                  "margin": (r_w - r_l).mean().detach(), "rewards/chosen": r_w.mean().detach(),
                  "rewards/rejected": r_l.mean().detach()}
