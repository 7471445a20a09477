"""Bad requests get the documented OpenAI error, and nothing leaks: the batch empties."""

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from serve_helpers import LiveServer, loaded_from, make_run_dir, serve, wait_idle

from parrot.serve import ServeSettings, create_app


def post(server, path, **kw):
    kw.setdefault("timeout", 60)
    return requests.post(server.url + path, **kw)


def error_of(response):
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_malformed_json_is_a_400(server):
    r = post(server, "/v1/chat/completions", data=b'{"model": "tiny", "messages": [',
             headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in error_of(r)["message"]


@pytest.mark.parametrize("field, value", [
    ("max_tokens", "ten"), ("max_tokens", -5), ("temperature", "hot"), ("n", 0),
    ("messages", "hello"), ("stop", ["", "x"]), ("top_p", 0),
])
def test_wrong_types_and_ranges_are_400s_naming_the_field(server, field, value):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], field: value}
    r = post(server, "/v1/chat/completions", json=body)
    assert r.status_code == 400
    assert error_of(r)["param"].split(".")[0] == field


def test_unknown_fields_are_ignored(server):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2,
            "frobnicate": {"deep": [1, 2]}}
    assert post(server, "/v1/chat/completions", json=body).status_code == 200


def test_a_10_mb_body_is_refused_with_413(server):
    body = b'{"model": "tiny", "prompt": "' + b"a" * (10 * 1024 * 1024) + b'"}'
    r = post(server, "/v1/completions", data=body, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "larger than" in error_of(r)["message"]


def test_unknown_model_is_a_404(server):
    r = post(server, "/v1/completions", json={"model": "gpt-9", "prompt": "hi"})
    assert r.status_code == 404 and error_of(r)["code"] == "model_not_found"


def test_prompt_beyond_the_context_is_a_clear_400(server):
    r = post(server, "/v1/completions", json={"model": "tiny", "prompt": "the fox " * 400})
    err = error_of(r)
    assert r.status_code == 400 and err["code"] == "context_length_exceeded"
    assert "context holds 128" in err["message"]


@pytest.fixture(scope="module")
def long_server(tmp_path_factory):
    # a long context, so a request still runs when its client leaves
    live = serve(make_run_dir(tmp_path_factory.mktemp("long") / "run", context_length=4096))
    yield live
    live.stop()


def test_client_dropping_mid_stream_frees_its_slot(long_server):
    body = {"model": "tiny", "prompt": "the", "max_tokens": 4000, "stream": True,
            "ignore_eos": True}
    sock = socket.create_connection(("127.0.0.1", long_server.port))
    payload = json.dumps(body).encode()
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                 b"\r\nContent-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
    received = b""
    while received.count(b"data: ") < 3:
        received += sock.recv(4096)
    assert long_server.state.worker.load()["running"] == 1
    sock.close()
    load = wait_idle(long_server)
    assert (load["running"], load["in_flight"], load["cancelled"]) == (0, 0, 1)


def test_burst_beyond_the_queue_gets_429_and_leaks_nothing(server):
    # capacity is max_batch 4 + max_queue 4 = 8 in flight; 16 at once must overflow
    body = {"model": "tiny", "prompt": "the quick", "max_tokens": 40, "ignore_eos": True}
    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda _: post(server, "/v1/completions", json=body), range(16)))
    statuses = sorted(r.status_code for r in codes)
    assert statuses.count(200) >= 8 and 429 in statuses
    busy = next(r for r in codes if r.status_code == 429)
    assert busy.headers["retry-after"] == "1" and error_of(busy)["type"] == "rate_limit_error"
    load = wait_idle(server)
    assert (load["running"], load["queued"], load["in_flight"]) == (0, 0, 0)
    assert post(server, "/v1/completions", json={**body, "max_tokens": 2}).status_code == 200


def test_api_key_is_required_when_set(run_dir):
    live = serve(run_dir, api_key="sesame")
    try:
        body = {"model": "tiny", "prompt": "hi", "max_tokens": 1}
        missing = post(live, "/v1/completions", json=body)
        wrong = post(live, "/v1/completions", json=body,
                     headers={"Authorization": "Bearer nope"})
        right = post(live, "/v1/completions", json=body,
                     headers={"Authorization": "Bearer sesame"})
        assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
        assert error_of(wrong)["code"] == "invalid_api_key"
        assert requests.get(live.url + "/health").status_code == 200
    finally:
        live.stop()


def test_503_while_the_model_loads(run_dir):
    release = threading.Event()

    def slow_loader():
        release.wait(30)
        return loaded_from(run_dir)

    live = LiveServer(create_app(slow_loader, ServeSettings(model_name="tiny")))
    live.start(wait_ready=False)
    try:
        r = post(live, "/v1/completions", json={"model": "tiny", "prompt": "hi"})
        assert r.status_code == 503 and "loading" in error_of(r)["message"]
        assert requests.get(live.url + "/health").status_code == 503
        release.set()
        deadline = time.monotonic() + 30
        while requests.get(live.url + "/health").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        body = {"model": "tiny", "prompt": "hi", "max_tokens": 1}
        assert post(live, "/v1/completions", json=body).status_code == 200
    finally:
        live.stop()


def test_a_request_past_the_timeout_is_a_504_and_frees_its_slot(tmp_path):
    live = serve(make_run_dir(tmp_path / "run", context_length=4096), timeout=0.5)
    try:
        body = {"model": "tiny", "prompt": "the", "max_tokens": 4000, "ignore_eos": True}
        r = post(live, "/v1/completions", json=body)
        assert r.status_code == 504 and "timeout" in error_of(r)["message"]
        load = wait_idle(live)
        assert (load["running"], load["in_flight"]) == (0, 0)
    finally:
        live.stop()
