import os

# Tests never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402  (after the environment above, which libraries read on import)
import torch  # noqa: E402


@pytest.fixture
def one_thread():
    """torch (and parrot's kernels, which take torch's thread count) on one thread: the
    machine is shared with the other test worker."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny random decoder run directory (byte-level BPE of 262 tokens, context 192)."""
    from parrot.model import ModelConfig, Transformer
    from parrot.rundir import save_weights, write_config
    from parrot.tokenizer import Tokenizer

    path = tmp_path_factory.mktemp("run")
    tok = Tokenizer.train(["hello world " * 20], vocab_size=262, special_tokens=["<|endoftext|>"])
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=262, context_length=192, d_model=32, n_layers=2, n_heads=2)
    write_config(path, {"model": cfg.to_dict()})
    save_weights(path, Transformer(cfg))
    tok.save(path)
    return path
