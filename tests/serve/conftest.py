"""Fixtures: one tiny model and one live server per session, shared by the server tests."""

import pytest
import torch
from serve_helpers import make_run_dir, serve


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    torch.set_num_threads(1)
    return make_run_dir(tmp_path_factory.mktemp("serve") / "tiny")


@pytest.fixture(scope="session")
def server(run_dir):
    live = serve(run_dir, max_batch=4, max_queue=4, api_key=None)
    yield live
    live.stop()


@pytest.fixture(scope="session")
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="session")
def tokenizer(run_dir):
    from parrot.tokenizer import Tokenizer

    return Tokenizer.load(run_dir)
