"""DPO loss and metrics equal TRL's DPOTrainer on one batch of a tiny random Llama that
parrot's Hugging Face loader (the function users run) converted."""

from __future__ import annotations

import copy

import pytest
import torch

transformers = pytest.importorskip("transformers")
trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

from trl.trainer.dpo_trainer import DataCollatorForPreference  # noqa: E402

from parrot.data.preference import PreferenceBatch  # noqa: E402
from parrot.hub.hf import load_hf  # noqa: E402
from parrot.tokenizer import Tokenizer  # noqa: E402
from parrot.training.logprobs import batch_logprobs  # noqa: E402
from parrot.training.objectives_pref import DPOConfig, make_dpo_objective  # noqa: E402

VOCAB = 300
NAMES = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
         "logps/chosen", "logps/rejected")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(HF reference, HF policy, parrot reference, parrot policy, HF tokenizer)."""
    root = tmp_path_factory.mktemp("trl")
    tok = Tokenizer.train(["the quick brown fox jumps over the lazy dog " * 20], VOCAB,
                          special_tokens=["<|endoftext|>"])
    cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=96,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=128,
                                   tie_word_embeddings=False)
    torch.manual_seed(0)
    ref = transformers.LlamaForCausalLM(cfg).eval()
    policy = copy.deepcopy(ref)
    with torch.no_grad():  # the policy has moved away from the reference
        for p in policy.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    converted = []
    for name, hf in (("ref", ref), ("policy", policy)):
        hf.save_pretrained(root / name)
        tok.save(root / name)
        converted.append(load_hf(root / name)[0])
    hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_file=str(root / "ref" / "tokenizer.json"),
                                                  eos_token="<|endoftext|>",
                                                  pad_token="<|endoftext|>")
    return ref, policy, *converted, hf_tok


def batch_inputs() -> dict:
    g = torch.Generator().manual_seed(3)

    def ids(n: int) -> list[int]:
        return torch.randint(1, VOCAB, (n,), generator=g).tolist()

    examples = [{"prompt_ids": ids(p), "chosen_ids": ids(c), "rejected_ids": ids(r)}
                for p, c, r in ((5, 7, 3), (9, 2, 6), (3, 4, 4))]
    return DataCollatorForPreference(pad_token_id=0)(examples)


def trl_loss(models, tmp_path, loss_type: str, beta: float) -> tuple[float, dict]:
    ref, policy, _, _, hf_tok = models
    args = trl.DPOConfig(output_dir=str(tmp_path), beta=beta, loss_type=[loss_type],
                         report_to="none", use_cpu=True, precompute_ref_log_probs=False,
                         bf16=False)  # fp32 on both sides (its default autocasts to bf16)
    data = datasets.Dataset.from_dict({"prompt": ["the fox"], "chosen": [" jumps"],
                                       "rejected": [" dog"]})
    trainer = trl.DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=data,
                             processing_class=hf_tok)
    trainer.model.train()
    with torch.no_grad():
        loss = trainer._compute_loss(trainer.model, batch_inputs(), False)
    metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    return float(loss), metrics


def parrot_loss(models, loss_type: str, beta: float) -> tuple[float, dict]:
    _, _, ref, policy, _ = models
    inputs = batch_inputs()
    batch = PreferenceBatch(inputs["input_ids"], inputs["completion_mask"][:, 1:].float(),
                            inputs["attention_mask"].sum(1))
    with torch.no_grad():
        batch = PreferenceBatch(batch.tokens, batch.mask, batch.lengths,
                                batch_logprobs(ref, batch))
        loss, metrics = make_dpo_objective(DPOConfig(beta, loss_type))(policy, batch)
    return float(loss), {k: float(v) for k, v in metrics.items()}


@pytest.mark.parametrize("loss_type, beta", [("sigmoid", 0.1), ("sigmoid", 2.0), ("ipo", 0.5)])
def test_dpo_loss_and_metrics_equal_trl(models, tmp_path, loss_type, beta):
    want_loss, want = trl_loss(models, tmp_path, loss_type, beta)
    got_loss, got = parrot_loss(models, loss_type, beta)
    assert got_loss == pytest.approx(want_loss, abs=1e-4)
    for name in NAMES:
        assert got[name] == pytest.approx(want[name], abs=1e-4), name
    assert abs(want["rewards/margins"]) > 1e-3  # the policy really differs from the reference
