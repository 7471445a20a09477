"""lm-evaluation-harness scores a model through the server (slow: it runs the harness).

Two tasks, each a small YAML over a JSONL written here (nothing is downloaded): a
multiple-choice log-likelihood task through `local-completions` (prompt echo with per-token
log-probabilities, the /tokenize endpoints), and a generative task through
`local-chat-completions`. The harness's numbers are checked against the model directly.
"""

import json

import pytest
import torch

pytestmark = pytest.mark.slow

MC_DOCS = [
    {"question": "The quick brown", "choices": ["fox", "parrot", "server"], "answer": 0},
    {"question": "A parrot repeats what it", "choices": ["hears", "jumps", "the"], "answer": 0},
    {"question": "The server answers every", "choices": ["client", "dog", "river"], "answer": 0},
    {"question": "the lazy", "choices": ["dog", "quick", "turn"], "answer": 0},
]
GEN_DOCS = [{"question": "Say hello.", "answer": "hello"},
            {"question": "Name a bird.", "answer": "parrot"}]

MC_YAML = """\
task: parrot_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
metric_list:
  - metric: acc
"""
GEN_YAML = """\
task: parrot_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{question}}}}"
doc_to_target: answer
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 6
  do_sample: false
metric_list:
  - metric: exact_match
"""


def write_task(folder, name, yaml_text, docs):
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    (folder / f"{name}.yaml").write_text(yaml_text.format(data=data), encoding="utf-8")


def evaluate(folder, task, model, model_args, **kw):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    return simple_evaluate(model=model, model_args=model_args, tasks=[task],
                           task_manager=TaskManager(include_path=str(folder)),
                           log_samples=True, **kw)


def loglikelihood(model, tok, context, continuation):
    """Σ log p(continuation | context), split into tokens the way the harness splits them."""
    whole = tok.encode(context + continuation)
    n = len(tok.encode(context))
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([whole]))[0], dim=-1)
    return sum(logp[t - 1, whole[t]].item() for t in range(n, len(whole)))


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OPENAI_API_KEY", "unused")


def test_multiple_choice_loglikelihoods_match_the_model(server, tokenizer, tmp_path, env):
    write_task(tmp_path, "parrot_mc", MC_YAML, MC_DOCS)
    args = (f"model=tiny,base_url={server.url}/v1/completions,tokenizer_backend=remote,"
            "num_concurrent=1,max_retries=1")
    out = evaluate(tmp_path, "parrot_mc", "local-completions", args)
    model = server.state.loaded.model
    expected_acc = []
    for sample in out["samples"]["parrot_mc"]:
        doc = sample["doc"]
        ours = [loglikelihood(model, tokenizer, doc["question"], " " + c) for c in doc["choices"]]
        theirs = [float(r[0][0]) for r in sample["resps"]]
        assert theirs == pytest.approx(ours, abs=1e-3)
        expected_acc.append(float(max(range(3), key=lambda i: ours[i]) == doc["answer"]))
    acc = out["results"]["parrot_mc"]["acc,none"]
    assert acc == pytest.approx(sum(expected_acc) / len(expected_acc))


def test_generative_task_through_chat_completions(server, tmp_path, env):
    write_task(tmp_path, "parrot_gen", GEN_YAML, GEN_DOCS)
    args = (f"model=tiny,base_url={server.url}/v1/chat/completions,num_concurrent=2,"
            "max_retries=1,tokenizer_backend=none")
    out = evaluate(tmp_path, "parrot_gen", "local-chat-completions", args,
                   apply_chat_template=True)
    samples = out["samples"]["parrot_gen"]
    assert len(samples) == 2
    assert all(isinstance(s["resps"][0][0], str) for s in samples)
    assert "exact_match,none" in out["results"]["parrot_gen"]
