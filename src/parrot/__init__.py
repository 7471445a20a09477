"""parrot: a complete, readable, fast large-language-model system.

    import parrot
    llm = parrot.load("smollm2-135m-instruct")
    print(llm.generate("The capital of France is", max_new_tokens=20, temperature=0).text)

Importing parrot does nothing beyond defining names: the API (`parrot.api`) and the
subpackages are imported on first use.
"""

from typing import Any

__version__ = "0.1.0"

_API = ("LLM", "load", "load_model", "load_tokenizer", "train", "finetune", "distill",
        "seq2seq_train", "merge", "reward_train", "reward_score", "dpo")
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from parrot import api

        return getattr(api, name)
    raise AttributeError(f"module 'parrot' has no attribute {name!r}")
