"""FSDP2 over gloo: two sharded processes train like one with the same global batch (to
1e-5), for pretraining and LoRA fine-tuning, and sharded checkpoints resume on another
number of ranks (2 -> 1 and 1 -> 2)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_helpers import write_text

from parrot.model import ModelConfig, Transformer
from parrot.rundir import save_weights, write_config
from parrot.tokenizer import Tokenizer
from parrot.training.sharded import SafeReader, has_sharded, latest_folder

DRIVER = str(Path(__file__).with_name("fsdp_driver.py"))
PRETRAIN = ["data.tokenizer=bytes", "model.d_model=32", "model.n_layers=2",
            "model.context_length=16", "train.batch_size=8", "log_every=1", "train.warmup=3",
            "train.eval_iters=2", "train.threads=1", "train.steps=8", "eval_every=4",
            "checkpoint_every=4", "train.strategy=fsdp"]
LORA = ["train.steps=8", "train.batch_size=4", "train.log_every=1", "train.eval_every=4",
        "train.checkpoint_every=4", "train.threads=1", "train.strategy=fsdp"]
KEYS = ("loss", "val_loss", "grad_norm")


def run(spec: dict, ranks: int = 1) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = [sys.executable] if ranks == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
    done = subprocess.run([*launch, DRIVER, json.dumps(spec)], capture_output=True, text=True,
                          env=env, timeout=300)
    expected = 17 if spec.get("crash_at") else 0
    assert done.returncode == expected or (expected and done.returncode != 0), done.stderr[-3000:]


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def assert_same_curve(a: Path, b: Path) -> None:
    one, two = rows(a), rows(b)
    assert [r["step"] for r in one] == [r["step"] for r in two]
    for x, y in zip(one, two, strict=True):
        for key in KEYS:
            if key in x:
                assert y[key] == pytest.approx(x[key], rel=1e-5, abs=1e-6), (x["step"], key)


def make_base(root: Path) -> Path:
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer.train([], 256 + len(specials), special_tokens=specials)
    cfg = ModelConfig(vocab_size=tok.vocab_size, context_length=128, d_model=32, n_layers=2,
                      n_heads=4, n_kv_heads=2, positions="rope", norm="rmsnorm", mlp="swiglu",
                      bias=False, tie_embeddings=True)
    torch.manual_seed(0)
    root.mkdir(parents=True)
    tok.save(root)
    save_weights(root, Transformer(cfg))
    write_config(root, {"model": cfg.to_dict()})
    return root


def write_chats(path: Path) -> Path:
    lines = [json.dumps({"messages": [{"role": "user", "content": f"what is {i}?" + "?" * i},
                                      {"role": "assistant", "content": f"ARR {i}!" * (1 + i % 3)}]})
             for i in range(16)]  # uneven answer lengths: ranks hold unequal loss tokens
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.slow
def test_fsdp_pretraining_on_two_ranks_equals_one_process(tmp_path):
    data = str(write_text(tmp_path / "text.txt"))
    spec = {"kind": "pretrain", "data": data, "overrides": PRETRAIN}
    run({**spec, "out": str(tmp_path / "one")})
    run({**spec, "out": str(tmp_path / "two")}, ranks=2)
    assert_same_curve(tmp_path / "one", tmp_path / "two")
    assert has_sharded(tmp_path / "two") and (tmp_path / "two" / "model.safetensors").is_file()
    from safetensors.torch import load_file
    a, b = (load_file(tmp_path / d / "model.safetensors") for d in ("one", "two"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_fsdp_lora_finetuning_on_two_ranks_equals_one_process(tmp_path):
    base, chats = make_base(tmp_path / "base"), write_chats(tmp_path / "chats.jsonl")
    spec = {"kind": "lora", "base": str(base), "data": str(chats), "overrides": LORA}
    run({**spec, "out": str(tmp_path / "one")})
    run({**spec, "out": str(tmp_path / "two")}, ranks=2)
    assert_same_curve(tmp_path / "one", tmp_path / "two")
    assert (tmp_path / "two" / "adapter.safetensors").is_file()


@pytest.mark.slow
def test_a_sharded_checkpoint_resumes_on_another_number_of_ranks(tmp_path):
    data = str(write_text(tmp_path / "text.txt"))
    spec = {"kind": "pretrain", "data": data, "overrides": PRETRAIN}
    run({**spec, "out": str(tmp_path / "whole")})
    for first, second in [(2, 1), (1, 2)]:
        broken = tmp_path / f"broken-{first}-{second}"
        run({**spec, "out": str(broken), "crash_at": 4}, ranks=first)
        assert latest_folder(broken).name == "step-00000004"
        run({**spec, "out": str(broken), "resume": True}, ranks=second)
        assert_same_curve(tmp_path / "whole", broken)


def test_sharded_metadata_is_read_without_running_code(tmp_path):
    import pickle

    class Planted:
        def __reduce__(self):
            return (os.makedirs, (str(tmp_path / "pwned"),))

    (tmp_path / ".metadata").write_bytes(pickle.dumps(Planted()))
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        SafeReader(str(tmp_path)).read_metadata()
    assert not (tmp_path / "pwned").exists()
