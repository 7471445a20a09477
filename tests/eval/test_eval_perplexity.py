import math

import pytest
import torch
import torch.nn.functional as F

from parrot.errors import ParrotError
from parrot.eval.perplexity import evaluate_text, token_nlls, window_spans
from parrot.model import ModelConfig, Transformer
from parrot.tokenizer import Tokenizer

CTX = 16


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=300, context_length=CTX, d_model=32, n_layers=2, n_heads=2)
    return Transformer(cfg).eval()


@pytest.fixture(scope="module")
def tokenizer():
    texts = ["the cat sat on the mat and the hat " * 20]
    return Tokenizer.train(texts, 300)


def _naive_nlls(model, ids, context):
    """Each target t predicted from ids[max(0, t - context):t], one forward per token."""
    out = []
    for t in range(1, len(ids)):
        with torch.no_grad():
            logits = model(torch.tensor([ids[max(0, t - context):t]]))[0, -1]
        out.append(float(-F.log_softmax(logits.float(), -1)[ids[t]]))
    return out


def test_every_target_is_scored_once():
    for n, stride in [(5, 16), (100, 16), (100, 5), (17, 16), (18, 16), (40, 1)]:
        covered = []
        for begin, end, first in window_spans(n, CTX, stride):
            assert end - begin <= CTX + 1 and begin < first <= end
            covered.extend(range(first, end))
        assert covered == list(range(1, n))


def test_sliding_window_equals_a_single_pass_when_the_text_fits(model):
    ids = list(range(3, 3 + CTX + 1))  # CTX inputs, CTX targets: one window
    logits = model(torch.tensor([ids[:-1]]))[0]
    single = F.cross_entropy(logits, torch.tensor(ids[1:]), reduction="none").double()
    for stride in (1, 4, CTX):
        torch.testing.assert_close(token_nlls(model, ids, CTX, stride), single,
                                   rtol=1e-6, atol=1e-6)


def test_stride_one_equals_the_naive_maximal_context(model):
    torch.manual_seed(1)
    ids = torch.randint(0, 300, (45,)).tolist()
    expected = torch.tensor(_naive_nlls(model, ids, CTX), dtype=torch.float64)
    torch.testing.assert_close(token_nlls(model, ids, CTX, stride=1), expected,
                               rtol=1e-5, atol=1e-5)


def test_perplexity_and_bits_per_byte_follow_their_definitions(model, tokenizer):
    text = "the cat sat on the mat. " * 6
    result = evaluate_text(model, tokenizer, text, CTX, stride=8)
    ids = tokenizer.encode(text)
    nlls = token_nlls(model, ids, CTX, 8)
    assert result.tokens == len(ids) - 1 == len(nlls)
    assert result.nll == pytest.approx(float(nlls.mean()))
    assert result.perplexity == pytest.approx(math.exp(float(nlls.mean())))
    n_bytes = len(tokenizer.decode_bytes(ids[1:]))
    assert result.bytes == n_bytes < len(text.encode())  # the first token is not scored
    assert result.bits_per_byte == pytest.approx(float(nlls.sum()) / math.log(2) / n_bytes)


def test_too_short_text_or_bad_stride_is_a_clear_error(model, tokenizer):
    with pytest.raises(ParrotError, match="too short"):
        evaluate_text(model, tokenizer, "", CTX)
    with pytest.raises(ParrotError, match="stride"):
        token_nlls(model, [1, 2, 3], CTX, stride=CTX + 1)
