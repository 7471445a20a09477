"""Helpers for the server tests: a small random-weight run directory and a live server."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import requests
import torch
import uvicorn

from parrot.chat import get_template
from parrot.model import ModelConfig, Transformer
from parrot.rundir import save_weights, write_config
from parrot.serve import Loaded, ServeSettings, create_app
from parrot.serve.limits import server_config
from parrot.tokenizer import Tokenizer

SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
TEXT = ("the quick brown fox jumps over the lazy dog. a parrot repeats what it hears, "
        "and the server answers every client in turn. ") * 20


def make_run_dir(path: Path, context_length: int = 128, seed: int = 0,
                 specials: tuple[str, ...] = SPECIALS) -> Path:
    """A run directory with a byte-level BPE tokenizer and a random-weight tiny model."""
    torch.manual_seed(seed)
    tok = Tokenizer.train([TEXT], vocab_size=300, special_tokens=specials)
    cfg = ModelConfig(vocab_size=tok.vocab_size, context_length=context_length, d_model=64,
                      n_layers=2, n_heads=4)
    model = Transformer(cfg)
    path.mkdir(parents=True, exist_ok=True)
    write_config(path, {"model": cfg.to_dict()})
    save_weights(path, model)
    tok.save(path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """A uvicorn server in a thread on 127.0.0.1; `url` once started."""

    def __init__(self, app, header_timeout: float = 10.0) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(server_config(app, "127.0.0.1", self.port, header_timeout))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self, wait_ready: bool = True) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                r = requests.get(self.url + "/health", timeout=2)
                if r.status_code == 200 or (r.status_code == 503 and not wait_ready):
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise RuntimeError("the test server did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    @property
    def state(self):
        return self.app.state.parrot


def loaded_from(run_dir: Path, template: str = "chatml") -> Loaded:
    from parrot.rundir import load_model

    model, tok, _ = load_model(run_dir)
    return Loaded(model, tok, get_template(template))


def serve(run_dir: Path, template: str = "chatml", **settings) -> LiveServer:
    settings.setdefault("model_name", "tiny")
    app = create_app(lambda: loaded_from(run_dir, template), ServeSettings(**settings))
    return LiveServer(app).start()


def wait_idle(server: LiveServer, timeout: float = 10.0) -> dict:
    """The worker's load once nothing runs or waits (or the last reading after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        load = server.state.worker.load()
        if (load["running"], load["queued"], load["in_flight"]) == (0, 0, 0):
            return load
        if time.monotonic() > deadline:
            return load
        time.sleep(0.05)
