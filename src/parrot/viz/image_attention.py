"""Where a vision-language model looks: text-to-patch attention drawn over the picture.

The question is asked as a chat turn after the picture (`<image>` + question). One forward
with an `AttentionCapture` gives every layer's weights; for the prompt's last token (the
one whose output is the answer's first token) and each layer, the weights on the image's
patch positions, averaged over heads, are laid out on the patch grid and drawn over the
picture. `image_share` says how much of that token's attention goes to the picture at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from parrot.chat import render, special_tokens_text, template_for
from parrot.data.images import image_tensor
from parrot.errors import ParrotError
from parrot.infer.vision import IMAGE_PLACEHOLDER, expand_placeholders
from parrot.model import AttentionCapture
from parrot.viz.figure import new_figure


@dataclass(frozen=True)
class PatchAttention:
    """pixels (3, S, S); maps (layers, g, g): the last prompt token's attention on each
    patch, mean over heads; image_share (layers,): its total weight on the picture."""

    question: str
    pixels: np.ndarray
    maps: np.ndarray
    image_share: np.ndarray


@torch.no_grad()
def patch_attention(model: Any, tokenizer: Any, question: str, image: Any) -> PatchAttention:
    """Run `question` about `image` (any image source) once and collect the maps."""
    vc = getattr(model, "vision_config", None)
    if vc is None:
        raise ParrotError("This model is text-only; --image needs a vision-language model "
                          "(e.g. one trained with parrot train --preset vlm-tiny).")
    if vc.connection != "splice":
        raise ParrotError("Attention over the picture is drawn for spliced image tokens; this "
                          "model cross-attends to its pictures.")
    pixels = image_tensor(image, vc.image_size)
    content = question if IMAGE_PLACEHOLDER in question else IMAGE_PLACEHOLDER + question
    text = render([{"role": "user", "content": content}], template_for(tokenizer), True,
                  **special_tokens_text(tokenizer))
    ids = expand_placeholders(tokenizer.encode(text, allowed_special="all"),
                              vc.image_token_id, vc.tokens_per_image)
    if ids.count(vc.image_token_id) != vc.tokens_per_image:
        raise ParrotError(f"Ask about one picture: the question holds more than one "
                          f"{IMAGE_PLACEHOLDER}.")
    tokens = torch.tensor([ids])
    start = ids.index(vc.image_token_id)
    capture = AttentionCapture()
    model.eval()
    model.hidden(tokens, capture=capture, images=model.image_features(pixels[None]))
    grid = vc.image_size // vc.patch_size
    last = [w[0, :, -1, start : start + vc.n_patches].float().mean(0) for w in capture.weights]
    maps = torch.stack(last).view(-1, grid, grid).numpy()
    return PatchAttention(question, pixels.permute(1, 2, 0).numpy(), maps,
                          maps.reshape(len(last), -1).sum(-1))


def patch_attention_figure(view: PatchAttention) -> Figure:
    """The picture, then one panel per layer with its patch weights over the picture."""
    n = view.maps.shape[0]
    fig = new_figure(2.4 * (n + 1), 2.9)
    axes = fig.subplots(1, n + 1, squeeze=False)[0]
    size = view.pixels.shape[0]
    axes[0].imshow(view.pixels, interpolation="nearest")
    axes[0].set_title("picture", fontsize=9)
    for layer, ax in enumerate(axes[1:]):
        ax.imshow(view.pixels, interpolation="nearest")
        weights = view.maps[layer] / max(view.maps[layer].max(), 1e-12)
        overlay = ax.imshow(weights, cmap="magma", alpha=0.6, vmin=0.0, vmax=1.0,
                            extent=(-0.5, size - 0.5, size - 0.5, -0.5),
                            interpolation="nearest")
        ax.set_title(f"layer {layer}: {view.image_share[layer]:.0%} on picture", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(overlay, ax=list(axes), shrink=0.8, label="attention / layer's max")
    fig.suptitle(f"last prompt token's attention on the patches: {view.question!r}",
                 fontsize=9)
    return fig
