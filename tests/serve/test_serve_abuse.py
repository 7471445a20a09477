"""Abuse against a live server on loopback: each attack gets a clean answer (never a 500),
and afterwards no slot leaks, no worker is stuck and the next normal request is served."""

import json
import select
import socket
import time

import pytest
import requests
from serve_helpers import LiveServer, loaded_from, make_run_dir, wait_idle

from parrot.serve import ServeSettings, create_app
from parrot.serve import limits as serve_limits

NORMAL = {"model": "tiny", "prompt": "the quick", "max_tokens": 3}


def start(run_dir, header_timeout=10.0, **settings):
    settings.setdefault("model_name", "tiny")
    app = create_app(lambda: loaded_from(run_dir), ServeSettings(**settings))
    return LiveServer(app, header_timeout=header_timeout).start()


@pytest.fixture(scope="module")
def guarded(run_dir):
    live = start(run_dir, header_timeout=1.0, body_timeout=1.0, max_batch=4, max_queue=4)
    yield live
    live.stop()


@pytest.fixture(scope="module")
def long_ctx(tmp_path_factory):
    run = make_run_dir(tmp_path_factory.mktemp("abuse") / "run", context_length=2048)
    live = start(run, max_batch=4, max_queue=8)
    yield live
    live.stop()


def assert_healthy(server):
    """Nothing runs, waits or is counted in flight, and a normal request is answered."""
    load = wait_idle(server)
    assert (load["running"], load["queued"], load["in_flight"]) == (0, 0, 0), load
    r = requests.post(server.url + "/v1/completions", json=NORMAL, timeout=30)
    assert r.status_code == 200, r.text
    assert server.thread.is_alive() and server.state.worker._thread.is_alive()


def read_response(sock) -> bytes:
    """One whole HTTP response with a Content-Length body (or what came before EOF)."""
    data = b""
    while True:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")]
            if length and len(body) >= length[0]:
                return data
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def raw_request(port, head: bytes, body: bytes = b"", timeout=30) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head + body)
        data = read_response(sock)
    return int(data.split(b" ", 2)[1]), data


def post_head(length: int, path=b"/v1/completions", extra=b"") -> bytes:
    return (b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + extra + b"Content-Length: " + str(length).encode() + b"\r\n\r\n")


def test_slow_headers_are_cut_off_with_408_while_others_are_served(guarded):
    socks = []
    for _ in range(20):  # twenty slowloris connections trickling header bytes
        s = socket.create_connection(("127.0.0.1", guarded.port))
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)
    r = requests.post(guarded.url + "/v1/completions", json=NORMAL, timeout=30)
    assert r.status_code == 200  # served while the slow ones hang on
    time.sleep(0.5)
    for s in socks:
        s.sendall(b"X-Slow: 1\r\n")  # still trickling, never finishing
    answers = []
    for s in socks:
        s.settimeout(5)
        data = s.recv(4096)
        answers.append(data.split(b" ", 2)[1])
        s.close()
    assert answers == [b"408"] * 20
    assert_healthy(guarded)


def test_a_slow_body_gets_408_and_frees_everything(guarded):
    payload = json.dumps(NORMAL).encode()
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=10) as sock:
        sock.sendall(post_head(len(payload)) + payload[:5])  # then nothing more
        data = read_response(sock)
    assert data.startswith(b"HTTP/1.1 408")
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_timeout"
    assert_healthy(guarded)


def _drop_mid_stream(port, body):
    payload = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(post_head(len(payload)) + payload)
    received = b""
    while received.count(b"data: ") < 2:
        chunk = sock.recv(4096)
        assert chunk, "the server closed the stream early"
        received += chunk
    sock.close()


def _disconnects(server, times):
    body = {"model": "tiny", "prompt": "the", "max_tokens": 1500, "stream": True,
            "ignore_eos": True}
    before = server.state.worker.cancelled
    for _ in range(times):
        _drop_mid_stream(server.port, body)
    load = wait_idle(server, timeout=30)
    assert load["cancelled"] - before == times  # every abandoned stream freed its slot
    assert_healthy(server)


def test_fifty_clients_that_vanish_mid_stream_leak_nothing(long_ctx):
    _disconnects(long_ctx, 50)


@pytest.mark.slow
def test_a_thousand_clients_that_vanish_mid_stream_leak_nothing(long_ctx):
    _disconnects(long_ctx, 1000)


@pytest.mark.parametrize("path, body", [
    ("/v1/completions", {"model": "tiny", "prompt": "the fox " * 400}),
    ("/v1/chat/completions", {"model": "tiny", "messages": [
        {"role": "user", "content": "the fox " * 400}]}),
])
def test_a_prompt_over_the_context_is_openais_context_length_exceeded(server, path, body):
    r = requests.post(server.url + path, json=body, timeout=30)
    assert r.status_code == 400
    assert r.json() == {"error": {"message": r.json()["error"]["message"],
                                  "type": "invalid_request_error", "param": "messages",
                                  "code": "context_length_exceeded"}}
    assert_healthy(server)


def test_more_generations_than_the_server_holds_is_503_with_retry_after(server):
    body = {"model": "tiny", "prompt": "the", "n": 16, "max_tokens": 100000}
    r = requests.post(server.url + "/v1/completions", json=body, timeout=30)
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert r.json()["error"]["code"] == "capacity_exceeded"
    assert_healthy(server)


def test_a_full_queue_is_429_with_retry_after_never_500(long_ctx):
    # capacity 4 + 8 = 12 in flight; 4 long requests of n=3 fill it, the next is refused
    body = {"model": "tiny", "prompt": "the", "n": 3, "max_tokens": 1500, "stream": True,
            "ignore_eos": True}
    streams = [requests.post(long_ctx.url + "/v1/completions", json=body, stream=True,
                             timeout=60) for _ in range(4)]
    r = requests.post(long_ctx.url + "/v1/completions", json={**NORMAL, "n": 1}, timeout=30)
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert r.json()["error"]["type"] == "rate_limit_error"
    for s in streams:
        s.close()
    assert_healthy(long_ctx)


@pytest.mark.parametrize("raw", [
    b'{"model": "tiny", "prompt": "\xff\xfe\xfd"}',
    b'{"model": "tiny", "prompt": "\xed\xa0\x80"}',  # an encoded surrogate
    b'\xc3{"model": "tiny"}',
])
def test_invalid_utf8_is_a_400(server, raw):
    status, data = raw_request(server.port, post_head(len(raw)), raw)
    assert status == 400 and b"invalid_json" in data
    assert_healthy(server)


@pytest.mark.parametrize("path", [b"/v1/completions", b"/v1/chat/completions", b"/tokenize"])
def test_json_nested_100000_deep_is_a_400(server, path):
    raw = b'{"model": "tiny", "prompt": "hi", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    status, data = raw_request(server.port, post_head(len(raw), path), raw)
    assert status == 400 and b"too deeply" in data
    assert_healthy(server)


def test_a_100_mb_declared_body_is_refused_before_it_is_read(server):
    status, data = raw_request(server.port, post_head(100 * 1024 * 1024))
    assert status == 413
    assert_healthy(server)


def test_a_100_mb_streamed_body_is_cut_off_with_413(server):
    """Chunked, no length declared: the server stops reading at its limit and answers."""
    head = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b'{"prompt": "' + b"a" * (1 << 20)
    frame = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    sent, answer = 0, b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head)
        while sent < 100 * (1 << 20) and not answer:
            _, writable, _ = select.select([], [sock], [], 5)
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                answer = sock.recv(65536)
            elif writable:
                try:
                    sock.sendall(frame)
                    sent += len(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    break
        if not answer:
            answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413") and sent < 100 * (1 << 20)
    assert_healthy(server)


def test_the_api_key_is_compared_in_constant_time(monkeypatch):
    calls = []
    real = serve_limits.hmac.compare_digest
    monkeypatch.setattr(serve_limits.hmac, "compare_digest",
                        lambda a, b: calls.append((a, b)) or real(a, b))
    assert serve_limits.key_matches("Bearer sesame", "sesame")
    assert not serve_limits.key_matches("Bearer sesamf", "sesame")
    assert not serve_limits.key_matches("Bearer \udcff", "sesame")  # undecodable bytes
    assert len(calls) == 3


def test_cors_is_closed_unless_asked_for(run_dir, server):
    preflight = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    closed = requests.options(server.url + "/v1/completions", headers=preflight, timeout=10)
    plain = requests.post(server.url + "/v1/completions", json=NORMAL,
                          headers={"Origin": "http://evil.example"}, timeout=30)
    assert "access-control-allow-origin" not in closed.headers
    assert "access-control-allow-origin" not in plain.headers
    live = start(run_dir, cors_origins=("http://localhost:3000",))
    try:
        ok = requests.options(live.url + "/v1/completions", timeout=10, headers={
            **preflight, "Origin": "http://localhost:3000"})
        other = requests.options(live.url + "/v1/completions", headers=preflight, timeout=10)
        assert ok.headers["access-control-allow-origin"] == "http://localhost:3000"
        assert "access-control-allow-origin" not in other.headers
    finally:
        live.stop()


def test_parrot_serve_binds_to_loopback_by_default():
    import argparse

    from parrot.cli import serve as serve_cli

    parser = argparse.ArgumentParser()
    serve_cli.register(parser.add_subparsers())
    args = parser.parse_args(["serve"])
    assert args.host == "127.0.0.1" and args.cors_origins == []
