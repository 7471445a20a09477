"""`parrot finetune` / `parrot merge` end to end on a tiny base run directory."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from parrot.adapt.lora import lora_layers
from parrot.cli import main
from parrot.hub.resolve import resolve_model
from parrot.rundir import is_run_dir, load_model

FAST = ["--set", "train.steps=12", "--set", "train.batch_size=4", "--set", "train.lr=3e-3",
        "--set", "train.warmup=1", "--set", "train.threads=1", "--quiet"]


def finetune(base, chats, out, *extra):
    return main(["finetune", str(base), "--data", str(chats), "--out", str(out), *FAST, *extra])


def test_lora_finetune_writes_a_small_adapter_and_lowers_loss(base_dir, chats, tmp_path, capsys):
    out = tmp_path / "lora"
    assert finetune(base_dir, chats, out, "--method", "lora", "--rank", "4") == 0
    printed = capsys.readouterr().out
    assert "trainable parameters" in printed and "after" in printed
    assert (out / "adapter.safetensors").is_file() and not (out / "model.safetensors").exists()
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["method"] == "lora" and config["rank"] == 4
    before, after = (float(x) for x in printed.split("):")[1].replace("before,", "")
                     .replace("after", "").split())
    assert after < before
    model, _, _ = resolve_model(out)
    assert len(lora_layers(model)) == 8  # q,k,v,o in 2 layers


def test_merge_equals_base_plus_adapter(base_dir, chats, tmp_path):
    out, merged = tmp_path / "lora", tmp_path / "merged"
    assert finetune(base_dir, chats, out, "--method", "lora", "--targets", "all") == 0
    assert main(["merge", str(out), "--out", str(merged)]) == 0
    assert is_run_dir(merged)
    adapted, _, _ = resolve_model(out)
    plain, _, _ = load_model(merged)
    tokens = torch.randint(0, 256, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(plain(tokens), adapted(tokens), atol=1e-5, rtol=0)


def test_full_finetune_is_a_plain_run_directory(base_dir, chats, tmp_path):
    out = tmp_path / "full"
    assert finetune(base_dir, chats, out, "--method", "full") == 0
    assert is_run_dir(out)
    tuned, _, _ = load_model(out)
    base, _, _ = load_model(base_dir)
    assert not torch.equal(tuned.tok_emb.weight, base.tok_emb.weight)


def test_soft_prompt_keeps_base_file_identical(base_dir, chats, tmp_path):
    weights = (base_dir / "model.safetensors").read_bytes()
    out = tmp_path / "soft"
    assert finetune(base_dir, chats, out, "--method", "soft-prompt", "--prompt-tokens", "4") == 0
    model, _, _ = resolve_model(out)
    assert model.prompt.shape == (4, 32)
    assert (base_dir / "model.safetensors").read_bytes() == weights


@pytest.mark.parametrize("extra, message", [
    (["--method", "lora", "--targets", "nope"], "match no Linear layer"),
    (["--method", "lora", "--rank", "0"], "rank must be a positive integer"),
])
def test_bad_lora_settings_exit_2_with_one_sentence(base_dir, chats, tmp_path, extra, message):
    result = subprocess.run(
        [sys.executable, "-m", "parrot", "finetune", str(base_dir), "--data", str(chats),
         "--out", str(tmp_path / "x"), *FAST, *extra], capture_output=True, text=True)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_malformed_data_exits_2_naming_the_line(base_dir, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": []}\n{oops\n')
    assert main(["finetune", str(base_dir), "--data", str(bad), "--out",
                 str(tmp_path / "x"), *FAST]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:1" in err  # the first line already has no assistant turn


def test_engine_runs_base_plus_adapter_like_the_merged_model(base_dir, chats, tmp_path):
    from parrot.infer import Engine, SamplingParams

    out, merged = tmp_path / "lora", tmp_path / "merged"
    assert finetune(base_dir, chats, out, "--method", "lora") == 0
    assert main(["merge", str(out), "--out", str(merged)]) == 0
    params = SamplingParams(temperature=0.0, max_new_tokens=12)
    prompt = "<|im_start|>user\nwhat is 3?<|im_end|>\n<|im_start|>assistant\n"
    texts = []
    for model, tokenizer, _ in (resolve_model(out), load_model(merged)):
        texts.append(Engine(model, tokenizer, max_batch=1, max_len=64).generate(
            prompt, params).token_ids)
    assert texts[0] == texts[1]


def test_merge_refuses_a_soft_prompt_run(base_dir, chats, tmp_path, capsys):
    out = tmp_path / "soft"
    assert finetune(base_dir, chats, out, "--method", "soft-prompt", "--prompt-tokens", "2") == 0
    assert main(["merge", str(out), "--out", str(tmp_path / "m")]) == 2
    assert "only LoRA adapters fold into the weights" in capsys.readouterr().err


def test_generate_and_chat_resolve_a_lora_run_to_base_plus_adapter(base_dir, chats, tmp_path):
    out = tmp_path / "lora"
    assert finetune(base_dir, chats, out, "--method", "lora", "--targets", "all") == 0
    adapted, _, _ = resolve_model(out)
    resolved, _, _ = resolve_model(out)
    assert len(lora_layers(resolved)) == len(lora_layers(adapted))
    tokens = torch.randint(0, 256, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(resolved(tokens), adapted(tokens), atol=0, rtol=0)
    assert main(["generate", str(out), "--prompt", "hi", "--max-new-tokens", "3",
                 "--temperature", "0"]) == 0


def test_qlora_run_keeps_an_int8_base_and_merges(base_dir, chats, tmp_path, capsys):
    from parrot.adapt.qlora import Int8Linear

    out, merged = tmp_path / "qlora", tmp_path / "merged"
    assert finetune(base_dir, chats, out, "--method", "lora", "--quantize", "int8",
                    "--targets", "all") == 0
    assert json.loads((out / "adapter_config.json").read_text())["quantize"] == "int8"
    adapted, _, _ = resolve_model(out)
    assert any(isinstance(m, Int8Linear) for m in adapted.modules())
    assert main(["merge", str(out), "--out", str(merged)]) == 0
    plain, _, _ = load_model(merged)
    tokens = torch.randint(0, 256, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(plain(tokens), adapted(tokens), atol=1e-5, rtol=0)


def test_quantize_with_soft_prompt_exits_2(base_dir, chats, tmp_path, capsys):
    code = finetune(base_dir, chats, tmp_path / "x", "--method", "soft-prompt",
                    "--quantize", "int8")
    err = capsys.readouterr().err
    assert code == 2 and "only --method lora" in err and "Traceback" not in err


def test_soft_prompt_run_generates_through_the_engine(base_dir, chats, tmp_path):
    from parrot.infer import Engine, SamplingParams

    out = tmp_path / "soft"
    assert finetune(base_dir, chats, out, "--method", "soft-prompt", "--prompt-tokens", "4") == 0
    model, tokenizer, _ = resolve_model(out)
    prompt = tokenizer.encode("<|im_start|>user\nwhat is 3?<|im_end|>\n", allowed_special="all")
    got = Engine(model, tokenizer, max_batch=1, eos_ids=[]).generate(
        prompt, SamplingParams(temperature=0.0, max_new_tokens=6)).token_ids
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(6):
            ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
    assert got == ids[len(prompt):]
    assert main(["generate", str(out), "--prompt", "hi", "--max-new-tokens", "3",
                 "--temperature", "0"]) == 0


def test_sft_token_accuracy_reaches_metrics_jsonl(base_dir, chats, tmp_path):
    out = tmp_path / "lora"
    assert finetune(base_dir, chats, out) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "loss" in r]
    assert train and all(0 <= r["token_accuracy"] <= 1 for r in train)
    assert all("val_token_accuracy" in r for r in rows if "val_loss" in r)

