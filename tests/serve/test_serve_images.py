"""Images through the OpenAI API: image_url content parts with base64 data URLs."""

import openai
import pytest
import requests
import torch
from serve_helpers import serve
from vlm_helpers import make_vlm_run, png_header_only, scene_png

from parrot.data.images import data_url, png_bytes


@pytest.fixture(scope="module")
def vlm_server(tmp_path_factory):
    torch.set_num_threads(1)
    live = serve(make_vlm_run(tmp_path_factory.mktemp("vlm-serve") / "run"), max_batch=2,
                 model_name="vlm")
    yield live
    live.stop()


@pytest.fixture(scope="module")
def vlm_client(vlm_server):
    from openai import OpenAI

    return OpenAI(base_url=vlm_server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def image_message(url: str, text: str = "How many objects are there?") -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": text},
                                         {"type": "image_url", "image_url": {"url": url}}]}]


def test_the_openai_client_sends_an_image_and_gets_an_answer(vlm_client, tmp_path):
    url = data_url(scene_png(tmp_path / "scene.png").read_bytes())
    reply = vlm_client.chat.completions.create(model="vlm", messages=image_message(url),
                                               max_tokens=3, temperature=0)
    assert reply.choices[0].message.content is not None
    assert reply.usage.prompt_tokens > 16  # the picture's 16 tokens are prompt tokens
    streamed = vlm_client.chat.completions.create(model="vlm", messages=image_message(url),
                                                  max_tokens=3, temperature=0, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text == reply.choices[0].message.content


@pytest.mark.parametrize("url, message", [
    (data_url(b"not an image at all"), "not a PNG or JPEG"),
    (data_url(png_bytes(torch.rand(3, 64, 64))[:300]), "truncated or corrupt"),
    (data_url(png_header_only(20000, 20000)), "megapixels"),
    ("https://example.com/cat.png", "data URLs"),
    ("file:///etc/passwd", "data URLs"),
])
def test_bad_images_are_a_400_naming_messages(vlm_client, url, message):
    with pytest.raises(openai.BadRequestError) as caught:
        vlm_client.chat.completions.create(model="vlm", messages=image_message(url),
                                           max_tokens=2)
    assert message in caught.value.body["message"] and caught.value.body["param"] == "messages"


def test_more_images_than_the_model_takes_is_a_400(vlm_server, tmp_path):
    url = data_url(scene_png(tmp_path / "scene.png").read_bytes())
    part = {"type": "image_url", "image_url": {"url": url}}
    body = {"model": "vlm", "max_tokens": 2, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Compare."}, part, part]}]}
    r = requests.post(vlm_server.url + "/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 400 and "at most 1" in r.json()["error"]["message"]


def test_an_image_to_a_text_only_model_is_a_400(client, tmp_path):
    url = data_url(scene_png(tmp_path / "scene.png").read_bytes())
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="tiny", messages=image_message(url), max_tokens=2)
    assert "text-only" in caught.value.body["message"]


def test_the_page_can_attach_an_image(vlm_server):
    page = requests.get(vlm_server.url + "/", timeout=10).text
    script = requests.get(vlm_server.url + "/static/app.js", timeout=10).text
    assert 'type="file"' in page and 'accept="image/png,image/jpeg"' in page
    assert "image_url" in script and "readAsDataURL" in script
