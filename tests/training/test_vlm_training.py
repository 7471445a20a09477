"""The staged vision-language recipe on the one training loop, at a toy size."""

import json

import pytest
import torch

from parrot.data.scenes import scenes
from parrot.errors import ParrotError
from parrot.training.vlm import train_vlm
from parrot.training.vlm_data import (
    IMAGE,
    VisionSampler,
    encode_qa,
    train_tokenizer,
    vision_answer_loss,
)

TOY = ["vlm.lm_steps=4", "vlm.align_steps=3", "vlm.tune_steps=3", "vlm.train_scenes=40",
       "vlm.test_scenes=6", "vlm.val_scenes=6", "vlm.combo_scenes=3", "vlm.digits=false", "vision.width=32",
       "vision.heads=2", "model.d_model=64", "model.n_layers=2", "train.batch_size=8",
       "train.threads=1"]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(scenes("train", 30, seed=1), 320)


@pytest.mark.parametrize("layout", ["chat", "raw"])
def test_the_loss_falls_on_the_answer_tokens_only(tokenizer, layout):
    ids, mask = encode_qa(tokenizer, "What colour is the square?", "red", layout, IMAGE, 4)
    image = tokenizer.special_tokens[IMAGE]
    assert ids.count(image) == 4 and all(m == 0 for t, m in zip(ids, mask, strict=True)
                                           if t == image)
    answer = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m])
    assert answer.strip() in ("red<|im_end|>", "red<|endoftext|>")


@pytest.mark.parametrize("connection", ["splice", "cross"])
def test_the_answer_loss_reads_the_pictures(tokenizer, connection):
    from vlm_helpers import tiny_vlm

    model = tiny_vlm(tokenizer, connection)
    per_image = model.vision_config.tokens_per_image
    examples = scenes("train", 8, seed=2)
    items = [(ids, mask, i) for i, e in enumerate(examples)
             for ids, mask in [encode_qa(tokenizer, e.questions[0].question,
                                         e.questions[0].answer, "chat", IMAGE, per_image)]]
    pixels = torch.stack([torch.nn.functional.avg_pool2d(e.pixels, 2) for e in examples])
    batch = VisionSampler(items, pixels, 4, seed=0).next()
    loss, _ = vision_answer_loss(model, batch)
    loss.backward()
    assert model.vision.patch_embed.weight.grad.abs().sum() > 0
    blank = type(batch)(batch.tokens, batch.mask, torch.zeros_like(batch.pixels))
    assert loss.item() != vision_answer_loss(model, blank)[0].item()


@pytest.mark.slow
def test_vlm_tiny_runs_its_three_stages_into_a_loadable_run_dir(tmp_path):
    from parrot.hub.resolve import resolve_model
    from parrot.model import VisionLanguageModel

    out = tmp_path / "vlm"
    result = train_vlm("vlm-tiny", out, TOY, show_progress=False)
    assert "acc_with_image" in result.metrics and "acc_blind_combo" in result.metrics
    assert (out / "stages" / "lm" / "model.safetensors").is_file()
    lm_rows = [json.loads(x) for x in (out / "stages" / "lm" / "metrics.jsonl").open()]
    assert max(r["step"] for r in lm_rows) == 4
    model, tokenizer, info = resolve_model(out)
    assert isinstance(model, VisionLanguageModel) and info.chat_template == "chatml"
    assert not any("lora" in name for name, _ in model.named_parameters())
    again = train_vlm("vlm-tiny", out, resume=True, show_progress=False)  # all done: no work
    assert again.metrics["acc_with_image"] == result.metrics["acc_with_image"]
    with pytest.raises(ParrotError, match="already holds a run"):
        train_vlm("vlm-tiny", out, TOY, show_progress=False)
