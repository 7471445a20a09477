"""The server through the real `openai` client: chat and text completions, streamed and not."""

import pytest
import requests
import torch

from parrot.chat import get_template, render, special_tokens_text


def chat(client, **kw):
    kw.setdefault("model", "tiny")
    kw.setdefault("messages", [{"role": "user", "content": "the quick brown fox"}])
    return client.chat.completions.create(**kw)


def test_models_lists_the_served_model(client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny"]


def test_chat_usage_counts_equal_the_tokenizers(client, tokenizer):
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    r = chat(client, messages=messages, max_tokens=7, temperature=0,
             extra_body={"ignore_eos": True})
    prompt = render(messages, get_template("chatml"), True, **special_tokens_text(tokenizer))
    assert r.usage.prompt_tokens == len(tokenizer.encode(prompt, allowed_special="all"))
    assert r.usage.completion_tokens == 7
    assert r.usage.total_tokens == r.usage.prompt_tokens + 7
    assert r.choices[0].finish_reason == "length"
    assert r.choices[0].message.role == "assistant"


def test_completion_text_and_usage_match_the_tokenizer(client, tokenizer):
    r = client.completions.create(model="tiny", prompt="the quick brown", max_tokens=5,
                                  temperature=0, extra_body={"ignore_eos": True})
    assert r.usage.prompt_tokens == len(tokenizer.encode("the quick brown"))
    assert r.usage.completion_tokens == 5
    assert isinstance(r.choices[0].text, str)


def test_streamed_chat_equals_the_whole_answer(client):
    whole = chat(client, max_tokens=12, temperature=0, extra_body={"ignore_eos": True})
    chunks = list(chat(client, max_tokens=12, temperature=0, stream=True,
                       stream_options={"include_usage": True}, extra_body={"ignore_eos": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


def test_streamed_completion_ends_with_done(server):
    body = {"model": "tiny", "prompt": "the", "max_tokens": 4, "stream": True,
            "temperature": 0, "ignore_eos": True}
    with requests.post(server.url + "/v1/completions", json=body, stream=True, timeout=30) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert events[-1] == b"data: [DONE]"
    assert len(events) == 5  # four tokens, then [DONE]


def test_seed_reproduces_a_sampled_answer(client):
    a = chat(client, max_tokens=16, temperature=1.0, seed=42)
    b = chat(client, max_tokens=16, temperature=1.0, seed=42)
    c = chat(client, max_tokens=16, temperature=1.0, seed=43)
    assert a.choices[0].message.content == b.choices[0].message.content
    assert a.choices[0].message.content != c.choices[0].message.content


def test_n_choices_are_indexed_and_differ_with_sampling(client):
    r = chat(client, max_tokens=10, temperature=1.0, seed=1, n=3)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert len({c.message.content for c in r.choices}) > 1


def test_stop_sequence_cuts_the_answer_before_it(client):
    prompt = "the quick brown fox"
    full = client.completions.create(model="tiny", prompt=prompt, max_tokens=20, temperature=0,
                                     extra_body={"ignore_eos": True}).choices[0].text
    stop = full[5:8]
    assert stop and full.find(stop) >= 0
    cut = client.completions.create(model="tiny", prompt=prompt, max_tokens=20, temperature=0,
                                    stop=[stop], extra_body={"ignore_eos": True}).choices[0]
    assert cut.text == full[: full.find(stop)]
    assert cut.finish_reason == "stop"


def test_penalties_change_a_greedy_answer(client):
    plain = chat(client, max_tokens=20, temperature=0, extra_body={"ignore_eos": True})
    penal = chat(client, max_tokens=20, temperature=0, frequency_penalty=2.0,
                 presence_penalty=2.0, extra_body={"ignore_eos": True})
    assert plain.choices[0].message.content != penal.choices[0].message.content


def test_chat_logprobs_are_the_models(client):
    r = chat(client, max_tokens=5, temperature=0, logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for entry in content:
        assert len(entry.top_logprobs) == 3
        # greedy: the chosen token is the most likely one
        assert entry.logprob == pytest.approx(entry.top_logprobs[0].logprob, abs=1e-6)


def test_echo_scores_the_prompt_like_a_direct_forward(client, server, tokenizer):
    prompt = "the parrot repeats"
    r = client.completions.create(model="tiny", prompt=prompt, max_tokens=1, temperature=0,
                                  echo=True, logprobs=1)
    lp = r.choices[0].logprobs
    ids = tokenizer.encode(prompt)
    assert r.choices[0].text.startswith(prompt)
    assert len(lp.token_logprobs) == len(ids) + 1 and lp.token_logprobs[0] is None
    model = server.state.loaded.model
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids]))[0], dim=-1)
    for t in range(1, len(ids)):
        assert lp.token_logprobs[t] == pytest.approx(logp[t - 1, ids[t]].item(), abs=1e-4)


def test_tokenizer_endpoints_round_trip_in_vllm_shapes(server, tokenizer):
    r = requests.post(server.url + "/tokenize", json={"prompt": "hello parrot"}).json()
    assert r["tokens"] == tokenizer.encode("hello parrot") and r["count"] == len(r["tokens"])
    back = requests.post(server.url + "/detokenize", json={"tokens": r["tokens"]}).json()
    assert back == {"prompt": "hello parrot"}
    info = requests.get(server.url + "/tokenizer_info").json()
    assert info["eos_token"] == "<|endoftext|>" and info["model_max_length"] == 128
