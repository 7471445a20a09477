"""Known template-injection payloads fail with one ParrotError: a chat template from a GGUF
file or tokenizer_config.json cannot reach Python, mutate its inputs or exhaust the box."""

import os
import time

import pytest

from parrot.chat import render
from parrot.chat.templates import get_template
from parrot.errors import ParrotError

MESSAGES = [{"role": "user", "content": "hi"}]

ESCAPES = [
    # attribute walks to a function's globals (and from there to os)
    "{{ cycler.__init__.__globals__.os.popen('touch MARK').read() }}",
    "{{ joiner.__init__.__globals__['os'].system('touch MARK') }}",
    "{{ namespace.__init__.__globals__.os.system('touch MARK') }}",
    "{{ raise_exception.__globals__['os'].system('touch MARK') }}",
    "{{ strftime_now.__globals__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''['__class__']['__mro__'][1]['__subclasses__']() }}",
    "{{ messages.__class__.__base__.__subclasses__() }}",
    "{{ (cycler|attr('__init__')|attr('__globals__'))['os'].system('touch MARK') }}",
    "{{ self._TemplateReference__context.cycler.__init__.__globals__.os.system('touch MARK') }}",
    "{{ '{0.__class__.__mro__}'.format(messages) }}",
    "{{ '%s'.format_map({}).__class__ }}",
    # cycler/joiner objects used as gadgets
    "{% set c = cycler(1, 2) %}{{ c.__class__.__init__.__globals__ }}",
    "{% set j = joiner(',') %}{{ j.__call__.__func__.__globals__ }}",
    "{% set c = cycler(1) %}{{ c.next.__self__.__dict__ }}",
    # mutating what the caller passed (the immutable sandbox)
    "{{ messages.append({'role': 'system', 'content': 'x'}) }}",
    "{{ messages[0].update({'content': 'pwned'}) }}",
    "{% set _ = messages.pop() %}",
    # exhausting memory or time
    "{{ range(10**9) | list | length }}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(1000) %}"
    "{% endfor %}{% endfor %}{% endfor %}",
    "{{ 'a' * 10**10 }}",
    "{{ ['a'] * 10**9 }}",
    "{{ 10 ** (10 ** 10) }}",  # Jinja folds ** left to right: bracket the bomb
    "{{ lipsum(n=10**7) }}",
    "{% for i in range(90000) %}{{ 'x' * 999 }}{% endfor %}",
    "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
]


@pytest.mark.parametrize("payload", ESCAPES)
def test_injection_payloads_fail_with_one_parrot_error(payload, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    start = time.perf_counter()
    with pytest.raises(ParrotError) as err:
        render(MESSAGES, get_template(payload))
    assert time.perf_counter() - start < 10
    assert "\n" not in err.value.message
    assert not os.path.exists(tmp_path / "MARK")


def test_the_messages_are_untouched_after_a_mutation_attempt():
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(ParrotError, match="sandbox forbids"):
        render(messages, get_template("{{ messages[0].update({'content': 'x'}) }}"))
    assert messages == [{"role": "user", "content": "hi"}]


def test_ordinary_templates_still_render_within_the_limits():
    loop = "{% for i in range(1000) %}{{ i }}{% endfor %}{{ 'ab' * 3 }}{{ 2 ** 10 }}"
    assert render(MESSAGES, get_template(loop)).endswith("999ababab1024")
    chatml = render(MESSAGES, "chatml")
    assert chatml == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
