"""The vision encoder and the vision-language model against references."""

import pytest
import torch
from naive_transformer import attention, mlp, norm

from parrot.errors import ParrotError
from parrot.model import ModelConfig, Transformer, VisionConfig, VisionLanguageModel
from parrot.model.vision import VisionEncoder, patchify


def naive_patchify(images: torch.Tensor, p: int) -> torch.Tensor:
    """Patch by patch, pixel by pixel: (row in patch, column in patch, channel) order."""
    B, C, H, W = images.shape
    out = torch.zeros(B, (H // p) * (W // p), p * p * C, dtype=images.dtype)
    for b in range(B):
        for i in range(H // p):
            for j in range(W // p):
                vector = []
                for r in range(p):
                    for c in range(p):
                        for ch in range(C):
                            vector.append(images[b, ch, i * p + r, j * p + c])
                out[b, i * (W // p) + j] = torch.stack(vector)
    return out


@pytest.mark.parametrize("shape, p", [((2, 3, 8, 8), 4), ((1, 3, 12, 12), 3), ((1, 1, 4, 4), 2)])
def test_patchify_equals_the_naive_loop(shape, p):
    images = torch.randn(shape)
    assert torch.equal(patchify(images, p), naive_patchify(images, p))


def naive_encoder(encoder: VisionEncoder, pixels: torch.Tensor) -> torch.Tensor:
    """The encoder in float64 from the spec's formulas (the naive transformer's attention,
    norms and MLP, bidirectional): features (B, N, width)."""
    vc = encoder.vision_config
    cfg = vc.encoder_config()
    w, b = encoder.patch_embed.weight.double(), encoder.patch_embed.bias.double()
    rows = []
    for image in pixels.double():
        x = naive_patchify((2 * image - 1)[None], vc.patch_size)[0] @ w.T + b
        x = x + encoder.pos_emb.weight.double()
        for block in encoder.blocks:
            x = x + attention(norm(x, block.norm1, cfg.norm, cfg.norm_eps), block.attn, cfg)
            x = x + mlp(norm(x, block.norm2, cfg.norm, cfg.norm_eps), block.mlp, cfg.mlp)
        rows.append(norm(x, encoder.final_norm, cfg.norm, cfg.norm_eps))
    return torch.stack(rows)


# rms_norm squares in float32 by design (model/norms.py), so its float64 run is float32-exact.
@pytest.mark.parametrize("norm_kind, mlp_kind, tol", [("layernorm", "gelu", 1e-10),
                                                      ("rmsnorm", "swiglu", 1e-5)])
def test_vision_encoder_equals_the_naive_float64_transformer(norm_kind, mlp_kind, tol):
    torch.manual_seed(0)
    vc = VisionConfig(image_size=8, patch_size=2, width=16, layers=2, heads=2, norm=norm_kind,
                      mlp=mlp_kind)
    encoder = VisionEncoder(vc).double().eval()
    for p in encoder.parameters():  # non-trivial norms and biases
        p.data.add_(0.1 * torch.randn_like(p))
    assert not vc.encoder_config().causal
    pixels = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(encoder(pixels), naive_encoder(encoder, pixels),
                                   rtol=tol, atol=tol)


def test_the_encoder_is_bidirectional():
    """The first patch's features change when only the last patch changes."""
    torch.manual_seed(0)
    encoder = VisionEncoder(VisionConfig(image_size=8, patch_size=4, width=16, heads=2)).eval()
    pixels = torch.rand(1, 3, 8, 8)
    changed = pixels.clone()
    changed[..., 4:, 4:] = 0.0
    assert not torch.allclose(encoder(pixels)[0, 0], encoder(changed)[0, 0])


def small_lm() -> ModelConfig:
    return ModelConfig(vocab_size=50, context_length=48, d_model=32, n_layers=2, n_heads=4,
                       positions="rope", norm="rmsnorm", mlp="swiglu", bias=False)


@pytest.mark.parametrize("connection", ["splice", "cross"])
def test_text_only_prompts_equal_the_base_language_model(connection):
    torch.manual_seed(0)
    vlm = VisionLanguageModel(small_lm(), VisionConfig(image_size=8, patch_size=4, width=16,
                                                       heads=2, connection=connection,
                                                       image_token_id=3)).eval()
    base = Transformer(small_lm()).eval()
    base.load_state_dict(vlm.lm.state_dict())
    tokens = torch.randint(4, 50, (2, 20))
    assert torch.equal(vlm(tokens), base(tokens))


def test_splice_puts_each_feature_row_at_its_placeholder():
    torch.manual_seed(0)
    vlm = VisionLanguageModel(small_lm(), VisionConfig(image_size=8, patch_size=4, width=16,
                                                       heads=2, image_token_id=3))
    tokens = torch.tensor([[5, 3, 3, 3, 3, 7], [3, 3, 3, 3, 9, 9]])
    features = torch.randn(2, 4, 32)
    embeds = vlm.splice(tokens, features)
    assert torch.equal(embeds[0, 1:5], features[0]) and torch.equal(embeds[1, :4], features[1])
    assert torch.equal(embeds[0, 0], vlm.lm.tok_emb.weight[5])
    with pytest.raises(ParrotError, match="placeholder"):
        vlm.splice(tokens, features[:1])


def test_the_picture_changes_the_answer_only_after_it():
    """cross: tokens before the placeholder never see the picture (their cache can be
    reused by a text-only prompt), tokens after it do."""
    torch.manual_seed(0)
    vlm = VisionLanguageModel(small_lm(), VisionConfig(image_size=8, patch_size=4, width=16,
                                                       heads=2, connection="cross",
                                                       image_token_id=3)).eval()
    for layer in vlm.cross:
        layer.gate.data.fill_(1.0)
    tokens = torch.tensor([[5, 6, 3, 7, 8]])
    features = vlm.image_features(torch.rand(1, 3, 8, 8))
    with_image = vlm(tokens, images=features, image_starts=torch.tensor([2]))
    alone = vlm(tokens)
    assert torch.equal(with_image[0, :2], alone[0, :2])
    assert not torch.allclose(with_image[0, 2:], alone[0, 2:])


@pytest.mark.parametrize("change, message", [
    ({"patch_size": 5}, "divide"), ({"connection": "both"}, "connection"),
    ({"width": 30, "heads": 4}, "divisible"), ({"layers": 0}, "at least 1"),
])
def test_bad_vision_configs_say_what_to_change(change, message):
    with pytest.raises(ParrotError, match=message):
        VisionConfig(**change)
