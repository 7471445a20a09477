"""Chat templates: known renderings, parity with transformers, loss masks, context policy."""

import pytest

from parrot.chat import (
    Conversation,
    fit_to_context,
    get_template,
    render,
    render_ids,
)
from parrot.errors import ParrotError

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "2+2?"},
]

EXPECTED = {
    "chatml": "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
              "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
              "<|im_start|>assistant\n",
    "llama3": "<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
              "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
              "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "gemma": "<s><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
             "<start_of_turn>model\nHello!<end_of_turn>\n"
             "<start_of_turn>user\n2+2?<end_of_turn>\n<start_of_turn>model\n",
    "plain": "Be brief.\n\nUser: Hi\nAssistant: Hello!\nUser: 2+2?\nAssistant:",
}

# A template in the style models ship (SmolLM2-like ChatML with a default system prompt),
# exercising loops, conditionals, namespace-free sets, raise_exception and whitespace control.
HF_STYLE = """{% for message in messages %}
{% if loop.first and messages[0]['role'] != 'system' %}
{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM<|im_end|>\\n' }}
{% endif %}
{% if message['role'] not in ['system', 'user', 'assistant'] %}
{{ raise_exception('unknown role ' + message['role']) }}
{% endif %}
{{'<|im_start|>' + message['role'] + '\\n' + message['content'] | trim + '<|im_end|>' + '\\n'}}
{% endfor %}
{% if add_generation_prompt %}
{{ '<|im_start|>assistant\\n' }}
{% endif %}"""

TOOLISH = (
    "{{ bos_token }}{% for m in messages %}{{ m['role'] | upper }}: {{ m['content'] | tojson }}"
    "{% if not loop.last %}\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "\nASSISTANT:{% else %}{{ eos_token }}{% endif %}"
)


@pytest.mark.parametrize("name", EXPECTED)
def test_builtin_templates_render_known_strings(name):
    assert render(CONVERSATION, name, add_generation_prompt=True, bos_token="<s>") == EXPECTED[name]


def _hf_tokenizer(chat_template):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"<unk>": 0, "<s>": 1, "</s>": 2}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", chat_template=chat_template)


@pytest.mark.parametrize("source", [*EXPECTED, "hf_style", "toolish"])
@pytest.mark.parametrize("generation_prompt", [True, False])
def test_rendering_equals_transformers_apply_chat_template(source, generation_prompt):
    template = {"hf_style": HF_STYLE, "toolish": TOOLISH}.get(source, None)
    template = template or get_template(source).source
    hf = _hf_tokenizer(template)
    for messages in (CONVERSATION, CONVERSATION[1:2], CONVERSATION[1:3]):
        expected = hf.apply_chat_template(messages, tokenize=False,
                                          add_generation_prompt=generation_prompt)
        ours = render(messages, template, generation_prompt, bos_token="<s>", eos_token="</s>")
        assert ours == expected


def test_template_raise_exception_becomes_parrot_error():
    with pytest.raises(ParrotError, match="unknown role tool"):
        render([{"role": "tool", "content": "x"}], HF_STYLE)
    with pytest.raises(ParrotError, match="alternate"):
        render([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "gemma")


def test_unknown_template_name_is_a_parrot_error():
    with pytest.raises(ParrotError, match="Unknown chat template 'chatgpt'.*chatml"):
        render(CONVERSATION, "chatgpt")


def test_invalid_jinja_is_a_parrot_error():
    with pytest.raises(ParrotError, match="not valid Jinja"):
        render(CONVERSATION, "{% for m in messages %}")


def test_bad_message_is_a_parrot_error():
    with pytest.raises(ParrotError, match="'role'"):
        render([{"content": "hi"}])
    with pytest.raises(ParrotError, match="content"):
        render([{"role": "user", "content": None}])


class CharTokenizer:
    """One id per character; '<|im_end|>' and '<|im_start|>' are single special ids."""

    SPECIALS = {"<|im_start|>": 1000, "<|im_end|>": 1001}
    bos_id = eos_id = None

    def encode(self, text, allowed_special="none"):
        ids, i = [], 0
        while i < len(text):
            hit = next((s for s in self.SPECIALS if text.startswith(s, i)), None)
            ids.append(self.SPECIALS[hit] if hit else ord(text[i]))
            i += len(hit) if hit else 1
        return ids

    def decode(self, ids):
        names = {v: k for k, v in self.SPECIALS.items()}
        return "".join(names.get(i, chr(i) if i < 1000 else "") for i in ids)


@pytest.mark.parametrize("template", ["chatml", "plain", "llama3", "gemma"])
def test_loss_mask_covers_exactly_the_assistant_answers(template):
    tok = CharTokenizer()
    messages = CONVERSATION + [{"role": "assistant", "content": "4"}]
    ids, mask = render_ids(messages, tok, template)
    assert tok.decode(ids) == render(messages, template, add_generation_prompt=False)
    masked = "".join(tok.decode([i]) for i, m in zip(ids, mask, strict=True) if m)
    ends = {"chatml": "<|im_end|>\n", "plain": "\n", "llama3": "<|eot_id|>",
            "gemma": "<end_of_turn>\n"}[template]
    lead = " " if template == "plain" else ""
    assert masked == f"{lead}Hello!{ends}{lead}4{ends}"


def test_fit_to_context_drops_oldest_exchanges_and_keeps_the_system_prompt():
    messages = [{"role": "system", "content": "S" * 10}]
    for i in range(4):
        messages += [{"role": "user", "content": f"u{i}" * 5},
                     {"role": "assistant", "content": f"a{i}" * 5}]
    messages.append({"role": "user", "content": "last"})

    def count(ms):
        return sum(len(m["content"]) for m in ms)

    kept, dropped = fit_to_context(messages, count, limit=40)
    assert kept[0] == messages[0] and kept[-1] == messages[-1]
    assert dropped == 6 and kept[1]["content"] == "u3" * 5
    assert fit_to_context(messages, count, limit=1000) == (messages, 0)
    with pytest.raises(ParrotError, match="system prompt and the latest message"):
        fit_to_context(messages, count, limit=12)


def test_conversation_keeps_system_prompt_across_reset():
    chat = Conversation(system="sys")
    chat.add("user", "hi")
    chat.reset()
    assert chat.messages() == [{"role": "system", "content": "sys"}]
