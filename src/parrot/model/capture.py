"""AttentionCapture: an object the caller passes to collect attention weights.

The model keeps no state of its own; a forward that is given a capture appends one
(B, H, T, S) tensor of softmax weights per layer, in layer order, and uses the explicit
attention path (the fast path never materializes the weights).
"""

from __future__ import annotations

import torch


class AttentionCapture:
    """Collects each layer's attention weights (detached) during one or more forwards."""

    def __init__(self) -> None:
        self.weights: list[torch.Tensor] = []

    def record(self, weights: torch.Tensor) -> None:
        """Append one layer's weights (B, H, T, S)."""
        self.weights.append(weights.detach())

    def __len__(self) -> int:
        return len(self.weights)
