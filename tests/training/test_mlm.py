"""Masked language modelling: BERT's corruption proportions, the loss, and the CLI path
`parrot train --objective mlm` → `parrot fill-mask`."""

import io

import pytest
import torch
import torch.nn.functional as F
from train_helpers import parrot, write_text

from parrot.cli import main
from parrot.errors import ParrotError
from parrot.model import ModelConfig, Transformer
from parrot.tokenizer import Tokenizer
from parrot.training.objectives import objective_for
from parrot.training.objectives_mlm import IGNORE, bind_mlm, mask_tokens, masked_lm_loss, mlm

MASK, VOCAB, SPECIALS = 1, 1000, (0, 1, 2)


@pytest.fixture(scope="module")
def corrupted():
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(3, VOCAB, (200, 500), generator=gen)
    tokens[:, 0] = 2  # a special token at the start of every row ([CLS]-like)
    inputs, targets = mask_tokens(tokens, MASK, VOCAB, SPECIALS,
                                  generator=torch.Generator().manual_seed(1))
    return tokens, inputs, targets


def test_fifteen_percent_of_ordinary_tokens_are_selected(corrupted):
    tokens, _, targets = corrupted
    selected = targets != IGNORE
    rate = selected[:, 1:].float().mean().item()      # 99,800 ordinary tokens
    assert abs(rate - 0.15) < 0.006                    # about 5 standard deviations
    assert not selected[:, 0].any()                    # special tokens are never chosen
    assert torch.equal(targets[selected], tokens[selected])


def test_selected_tokens_are_80_masked_10_random_10_kept(corrupted):
    tokens, inputs, targets = corrupted
    selected = targets != IGNORE
    n = selected.sum().item()
    masked = (inputs[selected] == MASK).sum().item() / n
    kept = (inputs[selected] == tokens[selected]).sum().item() / n
    replaced = 1.0 - masked - kept
    assert abs(masked - 0.8) < 0.016 and abs(kept - 0.1) < 0.012
    assert abs(replaced - 0.1) < 0.012


def test_unselected_tokens_are_left_alone(corrupted):
    tokens, inputs, targets = corrupted
    unselected = targets == IGNORE
    assert torch.equal(inputs[unselected], tokens[unselected])


def test_loss_is_the_mean_cross_entropy_over_selected_positions_only():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7, requires_grad=True)
    targets = torch.tensor([[IGNORE, 3, IGNORE, 1, IGNORE], [IGNORE] * 4 + [6]])
    loss = masked_lm_loss(logits, targets)
    picks = [(0, 1, 3), (0, 3, 1), (1, 4, 6)]
    naive = sum(-F.log_softmax(logits[b, t], -1)[y] for b, t, y in picks) / 3
    torch.testing.assert_close(loss, naive)
    loss.backward()
    unselected = targets == IGNORE
    assert float(logits.grad[unselected].abs().max()) == 0.0   # no loss flows there


def test_a_batch_with_nothing_selected_has_zero_loss():
    loss = masked_lm_loss(torch.randn(1, 3, 5), torch.full((1, 3), IGNORE))
    assert loss.item() == 0.0


def test_evaluation_masks_the_same_way_every_time():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=40, context_length=16, d_model=16, n_layers=1, n_heads=2,
                      causal=False)
    model = Transformer(cfg).eval()
    batch = torch.randint(3, 40, (2, 17))
    first, _ = mlm(model, batch, mask_id=1, vocab_size=40, special_ids=(0, 1, 2))
    second, _ = mlm(model, batch, mask_id=1, vocab_size=40, special_ids=(0, 1, 2))
    assert first.item() == second.item()


def test_mlm_needs_a_mask_token():
    plain = Tokenizer.train(["hello world"], 260, special_tokens=["<|endoftext|>"])
    with pytest.raises(ParrotError, match=r"\[MASK\]"):
        bind_mlm(plain)
    with_mask = Tokenizer.train(["hello world"], 262, special_tokens=["<|endoftext|>",
                                                                     "[MASK]"])
    assert objective_for("mlm", with_mask).keywords["mask_id"] == 261


# --- the CLI: train from scratch, fill masks, refuse what an encoder cannot do -----------
FAST = ["--set", "model.d_model=32", "--set", "model.n_layers=1", "--set", "data.vocab_size=300",
        "--set", "train.batch_size=4", "--set", "train.eval_iters=2", "--set", "log_every=1",
        "--set", "train.warmup=2", "--set", "train.threads=1", "--set", "train.steps=6",
        "--set", "eval_every=3", "--set", "model.context_length=32"]


@pytest.fixture(scope="module")
def mlm_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mlm")
    data = write_text(tmp / "text.txt")
    out = tmp / "run"
    result = parrot("train", "--preset", "bert-tiny", "--objective", "mlm", "--data",
                    str(data), *FAST, "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    return out, data


def run_cli(capsys, monkeypatch, *argv):
    """The CLI in-process (no interpreter start-up): (exit code, stdout, stderr)."""
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_an_mlm_run_has_a_tokenizer_with_bert_specials(mlm_run):
    tok = Tokenizer.load(mlm_run[0])
    assert {"[MASK]", "[CLS]", "[SEP]", "[PAD]"} <= set(tok.special_tokens)


def test_fill_mask_prints_candidates_with_probabilities(mlm_run, capsys, monkeypatch):
    code, out, err = run_cli(capsys, monkeypatch, "fill-mask", mlm_run[0],
                             "the quick [MASK] fox", "--top-k", "3")
    assert code == 0, err
    assert len([line for line in out.splitlines() if "%" in line]) == 3


@pytest.mark.parametrize("argv, fragment", [
    (["fill-mask", "RUN", "no mask here"], "has no [MASK]"),
    (["generate", "RUN", "--prompt", "hi"], "encoder-only"),
    (["chat", "RUN"], "encoder-only"),
])
def test_what_an_encoder_cannot_do_is_one_sentence_and_exit_2(mlm_run, capsys, monkeypatch,
                                                               argv, fragment):
    argv = [mlm_run[0] if a == "RUN" else a for a in argv]
    code, _, err = run_cli(capsys, monkeypatch, *argv)
    assert code == 2 and fragment in err and err.count("\n") == 1
    assert "Traceback" not in err


@pytest.mark.parametrize("extra, fragment", [
    (["--set", "data.tokenizer=bytes"], "[MASK]"),
    (["--preset", "tiny"], "bidirectional"),
])
def test_bad_mlm_runs_fail_with_one_sentence(tmp_path, capsys, monkeypatch, extra, fragment):
    data = write_text(tmp_path / "text.txt", n_words=600)
    code, _, err = run_cli(capsys, monkeypatch, "train", "--preset", "bert-tiny",
                           "--objective", "mlm", "--data", data, "--out", tmp_path / "run",
                           *extra)
    assert code == 2 and fragment in err and "Traceback" not in err


def test_an_encoder_refuses_to_generate_from_python_too():
    from parrot.infer.encoder import require_decoder

    with pytest.raises(ParrotError, match="cannot generate"):
        require_decoder(ModelConfig(causal=False))
    require_decoder(ModelConfig())  # a decoder passes
