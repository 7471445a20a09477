import pytest
import torch
from viz_helpers import make_run_dir, small_model, small_tokenizer


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tokenizer():
    return small_tokenizer()


@pytest.fixture(scope="session")
def model(tokenizer):
    return small_model(tokenizer)


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    return make_run_dir(tmp_path_factory.mktemp("viz") / "run")
