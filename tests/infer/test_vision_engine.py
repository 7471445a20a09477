"""The engine with pictures in the prompt: cached decode equals recompute, the cache is
reused for follow-ups about the same picture, text-only prompts equal the base model."""

import pytest
import torch
from vlm_helpers import tiny_tokenizer, tiny_vlm

from parrot.errors import ParrotError
from parrot.infer import Engine, SamplingParams
from parrot.infer.vision import ImagePrompt, expand_placeholders, with_images
from parrot.model import Transformer

GREEDY = SamplingParams(temperature=0.0, max_new_tokens=6)


@pytest.fixture(scope="module")
def tokenizer():
    torch.set_num_threads(1)
    return tiny_tokenizer()


def pictures(n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def recompute(model, tokenizer, text: str, picture: torch.Tensor, steps: int) -> torch.Tensor:
    """Greedy decoding by full forwards over the whole sequence (no cache): (steps, V)."""
    vc = model.vision_config
    ids = expand_placeholders(tokenizer.encode(text, allowed_special="all"),
                              vc.image_token_id, vc.tokens_per_image)
    features = model.image_features(picture[None])
    start = torch.tensor([ids.index(vc.image_token_id)])
    rows = []
    with torch.no_grad():
        for _ in range(steps):
            logits = model(torch.tensor([ids]), images=features, image_starts=start)[0, -1]
            rows.append(logits)
            ids.append(int(logits.argmax()))
    return torch.stack(rows)


@pytest.mark.parametrize("connection", ["splice", "cross"])
def test_cached_decode_with_image_tokens_equals_recompute(tokenizer, connection):
    model = tiny_vlm(tokenizer, connection)
    engine = Engine(model, tokenizer, max_batch=2, max_len=160)
    text = "<image>How many red circles are there?"
    done = engine.generate(ImagePrompt(text, [pictures()[0]]), GREEDY, record_logits=True)
    expected = recompute(model, tokenizer, text, pictures()[0], len(done.token_ids))
    torch.testing.assert_close(done.logits, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("connection", ["splice", "cross"])
def test_batched_rows_with_different_pictures_decode_like_alone(tokenizer, connection):
    model = tiny_vlm(tokenizer, connection)
    prompts = [ImagePrompt("<image>What colour is the square?", [p]) for p in pictures()]
    prompts.append("What colour is the square?")  # a text-only row beside them
    alone = [Engine(model, tokenizer, max_batch=1, max_len=160).generate(p, GREEDY)
             for p in prompts]
    together = Engine(model, tokenizer, max_batch=3, max_len=160).generate_batch(prompts, GREEDY)
    assert [c.token_ids for c in together] == [c.token_ids for c in alone]


@pytest.mark.parametrize("connection", ["splice", "cross"])
def test_a_follow_up_about_the_same_picture_reuses_the_cache(tokenizer, connection):
    model = tiny_vlm(tokenizer, connection)
    engine = Engine(model, tokenizer, max_batch=1, max_len=160)
    first = "<image>How many objects are there?"
    picture = pictures()[0]
    one = engine.generate(ImagePrompt(first, [picture]), GREEDY)
    follow = ImagePrompt(first + one.text + " What colour is the circle?", [picture.clone()])
    two = engine.generate(follow, GREEDY, record_logits=True)
    assert one.stats.image_encode_s > 0 and two.stats.image_encode_s == 0.0
    assert two.stats.cached_tokens >= one.stats.prompt_tokens
    fresh = Engine(model, tokenizer, max_batch=1, max_len=160)
    again = fresh.generate(follow, GREEDY, record_logits=True)
    assert again.token_ids == two.token_ids
    torch.testing.assert_close(two.logits, again.logits, rtol=1e-4, atol=1e-4)


def test_another_picture_never_reuses_the_first_ones_tokens(tokenizer):
    model = tiny_vlm(tokenizer)
    engine = Engine(model, tokenizer, max_batch=1, max_len=160)
    text = "Look: <image>How many objects are there?"
    engine.generate(ImagePrompt(text, [pictures()[0]]), GREEDY)
    other = engine.generate(ImagePrompt(text, [pictures()[1]]), GREEDY)
    start = len(tokenizer.encode("Look: "))
    assert other.stats.cached_tokens == start and other.stats.image_encode_s > 0


@pytest.mark.parametrize("connection", ["splice", "cross"])
def test_text_only_prompts_to_a_vlm_generate_exactly_as_the_base_model(tokenizer, connection):
    model = tiny_vlm(tokenizer, connection)
    base = Transformer(model.config).eval()
    base.load_state_dict(model.lm.state_dict())
    prompt = "<|im_start|>user\nWhat shape is the blue object?<|im_end|>\n"
    params = SamplingParams(temperature=0.9, seed=3, max_new_tokens=8)
    vlm_out = Engine(model, tokenizer, max_batch=1).generate(prompt, params, record_logits=True)
    base_out = Engine(base, tokenizer, max_batch=1).generate(prompt, params, record_logits=True)
    assert vlm_out.token_ids == base_out.token_ids
    assert torch.equal(vlm_out.logits, base_out.logits)


def test_an_image_to_a_text_only_model_is_refused(tokenizer):
    model = tiny_vlm(tokenizer)
    base = Transformer(model.config).eval()
    with pytest.raises(ParrotError, match="text-only"):
        Engine(base, tokenizer).submit(ImagePrompt("<image>Hi", [pictures()[0]]))


def test_more_images_than_the_model_takes_are_refused(tokenizer):
    engine = Engine(tiny_vlm(tokenizer), tokenizer, max_batch=1)
    with pytest.raises(ParrotError, match="at most 1"):
        engine.submit(ImagePrompt("<image><image>Hi", list(pictures())))
    with pytest.raises(ParrotError, match="placeholder"):
        engine.submit(ImagePrompt("Hi", [pictures()[0]]))
    with pytest.raises(ParrotError, match="placeholder"):
        engine.submit("<image>Hi")


def test_with_images_puts_one_placeholder_per_image_in_front():
    prompt = with_images("Which digit is this?", ["a.png"])
    assert prompt.text == "<image>Which digit is this?" and prompt.images == ["a.png"]
    assert with_images("x <image> y", ["a"]).text == "x <image> y"
    assert with_images("plain", None) == "plain"
