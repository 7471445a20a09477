"""SmolLM2-135M-Instruct from its GGUF: against llama.cpp's references and `transformers`."""

from __future__ import annotations

import os

import pytest
import torch


def greedy(model, prompt_ids: list[int], steps: int) -> list[int]:
    """Plain greedy decoding by recomputation (independent of the engine under test)."""
    ids = list(prompt_ids)
    with torch.no_grad():
        for _ in range(steps):
            ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
    return ids[len(prompt_ids):]


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def test_config_matches_smollm2(smollm2):
    model, _, info = smollm2
    cfg = model.config
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.kv_heads, cfg.ff_size) == (30, 576, 9, 3, 1536)
    assert cfg.rope_theta == 100000.0 and cfg.tie_embeddings
    assert info.quantization == "Q4_1" and model.num_parameters() == 134_515_008


def test_top_token_at_first_step_agrees_with_llama_cpp(smollm2, smollm2_reference):
    model, _, _ = smollm2
    for case in smollm2_reference["greedy"]:
        with torch.no_grad():
            logits = model(torch.tensor([case["prompt_ids"]]))[0, -1]
        top_id, top_logit = case["top5_first_step"][0]
        assert int(logits.argmax()) == top_id, case["name"]
        # llama.cpp multiplies quantized activations: logits agree only loosely.
        assert abs(float(logits[top_id]) - top_logit) < 1.5


@pytest.mark.slow
def test_greedy_continuations_share_a_long_prefix_with_llama_cpp(smollm2, smollm2_reference):
    model, tokenizer, _ = smollm2
    lengths = {}
    for case in smollm2_reference["greedy"]:
        ours = greedy(model, case["prompt_ids"], len(case["greedy_ids"]))
        lengths[case["name"]] = common_prefix(ours, case["greedy_ids"])
    print("common greedy prefix with llama.cpp:", lengths)
    # Measured: plain_france 5, chat_france 8 (all), code_fib 12, chat_system 23.
    assert all(n >= 5 for n in lengths.values()), lengths
    assert sum(lengths.values()) >= 40, lengths


@pytest.mark.slow
def test_logits_match_transformers_on_the_same_gguf(smollm2, smollm2_path):
    """transformers dequantizes the same file to fp32; the forward passes agree to ~1e-4."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    model, tokenizer, _ = smollm2
    reference = transformers.AutoModelForCausalLM.from_pretrained(
        smollm2_path.parent, gguf_file=smollm2_path.name, dtype=torch.float32).eval()
    ids = torch.tensor([tokenizer.encode("The capital of France is Paris. 12345 naïve 🦜\n")])
    with torch.no_grad():
        torch.testing.assert_close(model(ids), reference(ids).logits, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_weight_only_quantized_smollm2_keeps_llama_cpp_top_tokens(mode, smollm2_path,
                                                                 smollm2_reference):
    """What `--quantize` gives (fused projections, parrot's kernels). Three of the four
    prompts are shorter than PREFILL_ROWS, so their full forwards run the decode kernels."""
    from parrot.adapt.prepare import prepare_for_inference
    from parrot.hub.gguf_model import load_gguf
    from parrot.utils.home import home_from

    model, _, _ = load_gguf(smollm2_path)
    prepare_for_inference(model, mode, home=home_from(os.environ))
    with torch.no_grad():
        for case in smollm2_reference["greedy"]:
            logits = model(torch.tensor([case["prompt_ids"]]))[0, -1]
            assert int(logits.argmax()) == case["top5_first_step"][0][0], case["name"]


def test_the_chat_template_travels_with_the_tokenizer_and_renders_the_default_system(
    smollm2_path,
):
    from parrot.chat import render, special_tokens_text, template_for
    from parrot.hub.resolve import resolve_model

    _, tokenizer, info = resolve_model(smollm2_path)
    assert tokenizer.chat_template == info.chat_template
    template = template_for(tokenizer)
    text = render([{"role": "user", "content": "Hi"}], template, add_generation_prompt=True,
                  **special_tokens_text(tokenizer))
    assert text == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
                    "Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                    "<|im_start|>assistant\n")
