"""lm-evaluation-harness in-process: its `LM` interface over a parrot model (no server).

The harness asks three things of a model, each a list of requests:

  - loglikelihood(context, continuation) -> (sum of log p(continuation tokens | ...),
    whether greedy decoding would have produced exactly the continuation);
  - loglikelihood_rolling(text) -> the whole text's log-likelihood (perplexity tasks);
  - generate_until(context, {"until": [...], "max_gen_toks": n}) -> greedy text.

Tokens are split as the harness's own Hugging Face model splits them: the context and the
context + continuation are encoded, and the continuation is the tail beyond the
context's tokens. Long inputs keep their end (the model's context length).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lm_eval.api.model import LM

from parrot.eval.perplexity import token_nlls
from parrot.eval.tasks import lm_eval_task_yaml
from parrot.infer.sampling import SamplingParams


class ParrotLM(LM):
    """The harness's model: parrot's decoder, tokenizer and (for generation) engine."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, engine: Any = None) -> None:
        super().__init__()
        self.model, self.tokenizer, self.engine = model, tokenizer, engine
        self.context = model.config.context_length
        add_bos = getattr(tokenizer, "add_bos", False) and tokenizer.bos_id is not None
        self.prefix = [tokenizer.bos_id] if add_bos else []

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text) if text else []

    @torch.no_grad()
    def _score(self, context: str, continuation: str) -> tuple[float, bool]:
        whole = self.prefix + self._encode(context + continuation)
        n_context = len(self.prefix) + len(self._encode(context))
        n = max(1, len(whole) - n_context)
        ids = whole[-(self.context + 1):]
        if len(ids) < 2:
            ids = (self.prefix or [self.tokenizer.eos_id or 0]) + ids
        x = torch.tensor(ids, dtype=torch.long)[None]
        logp = torch.log_softmax(self.model(x[:, :-1])[0].double(), -1)[-n:]  # (n, V)
        targets = x[0, -n:]
        total = float(logp.gather(-1, targets[:, None]).sum())
        return total, bool((logp.argmax(-1) == targets).all())

    def loglikelihood(self, requests: Sequence[Any]) -> list[tuple[float, bool]]:
        return [self._score(*request.args) for request in requests]

    def loglikelihood_rolling(self, requests: Sequence[Any]) -> list[float]:
        out = []
        for request in requests:
            ids = self.prefix + self._encode(request.args[0])
            if not self.prefix:
                ids = [self.tokenizer.eos_id or 0] + ids  # the first token's context
            out.append(-float(token_nlls(self.model, ids, self.context).sum()))
        return out

    def generate_until(self, requests: Sequence[Any]) -> list[str]:
        out = []
        for request in requests:
            context, kwargs = request.args
            until = kwargs.get("until") or []
            params = SamplingParams(temperature=0.0, max_new_tokens=int(
                kwargs.get("max_gen_toks", 64)), stop=tuple([until] if isinstance(until, str)
                                                             else until))
            out.append(self.engine.generate(context, params, truncate=True).text)
        return out


def run_tasks(lm: ParrotLM, tasks: dict[str, Path], folder: Path,
              limit: int | None = None) -> dict[str, dict[str, float]]:
    """{task: {metric: value}} for local JSONL choice tasks ({name: file}), through
    `lm_eval.simple_evaluate` with task YAMLs written into `folder`."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    for name, path in tasks.items():
        (folder / f"{name}.yaml").write_text(lm_eval_task_yaml(name, path), encoding="utf-8")
    result = simple_evaluate(model=lm, tasks=list(tasks), limit=limit, log_samples=False,
                             task_manager=TaskManager(include_path=str(folder)),
                             bootstrap_iters=1000)
    return {name: {key.split(",")[0]: float(value) for key, value in metrics.items()
                   if isinstance(value, (int, float)) and "," in key}
            for name, metrics in result["results"].items()}
