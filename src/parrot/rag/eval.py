"""Evaluation over a QA set: retrieval (recall@k, MRR) and answers (containment).

A retrieved chunk answers an item when it comes from the item's document (the stored path
ends with `/doc`) and overlaps the gold span by at least half of the shorter of the two.

    recall@k = fraction of questions with an answering chunk among the top k
    MRR      = mean over questions of 1 / rank of the first answering chunk (0 if none in
               the top `depth`)
    containment = fraction of answers holding the answer key (case ignored)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from parrot.rag.qa import QAItem
from parrot.rag.retrieve import Hit

KS = (1, 5, 10)


def answers_item(hit: Hit, item: QAItem) -> bool:
    """Whether a retrieved chunk holds the item's gold passage (see the module docstring)."""
    if not (hit.path == item.doc or hit.path.endswith("/" + item.doc)):
        return False
    overlap = min(hit.end, item.end) - max(hit.start, item.start)
    return overlap > 0 and overlap >= 0.5 * min(hit.end - hit.start, item.end - item.start)


def first_rank(hits: Sequence[Hit], item: QAItem) -> int | None:
    """The rank (1-based) of the first answering chunk, None when none answers."""
    return next((n for n, h in enumerate(hits, 1) if answers_item(h, item)), None)


def retrieval_metrics(ranks: Sequence[int | None], ks: Sequence[int] = KS) -> dict[str, float]:
    """recall@k for each k and MRR, from the first answering rank of each question."""
    n = max(len(ranks), 1)
    out = {f"recall@{k}": sum(1 for r in ranks if r is not None and r <= k) / n for k in ks}
    out["mrr"] = sum(1.0 / r for r in ranks if r is not None) / n
    return out


def evaluate_retrieval(items: Sequence[QAItem], retrieve: Callable[[str], list[Hit]],
                       ks: Sequence[int] = KS) -> tuple[dict[str, float], list[int | None]]:
    """Metrics and per-question first ranks of `retrieve(question) -> hits` (≥ max(ks))."""
    ranks = [first_rank(retrieve(item.question), item) for item in items]
    return retrieval_metrics(ranks, ks), ranks


def contains(answer: str, key: str) -> bool:
    return key.lower() in answer.lower()


def containment(answers: Sequence[str], items: Sequence[QAItem]) -> float:
    return sum(contains(a, i.answer) for a, i in zip(answers, items, strict=True)) / max(len(items), 1)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% for z = 1.96):

        (p + z²/2n ± z·sqrt(p(1−p)/n + z²/4n²)) / (1 + z²/n)
    """
    if n == 0:
        return 0.0, 0.0
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5
    return (centre - spread) / (1 + z * z / n), (centre + spread) / (1 + z * z / n)


def retrieval_eval(store: Any, embedder: Any, items: Sequence[QAItem],
                   modes: Sequence[str] = ("vector", "keyword", "hybrid"),
                   filters: Any = None) -> dict[str, dict[str, float]]:
    """recall@1/5/10 and MRR of each retrieval mode on `store` (top 10 per question)."""
    from parrot.rag.retrieve import check_mode, search
    from parrot.rag.store import NO_FILTERS

    out = {}
    for mode in modes:
        mode = check_mode(mode)
        metrics, _ = evaluate_retrieval(
            items, lambda q, m=mode: search(store, embedder, q, max(KS), m, filters or NO_FILTERS))
        out[mode] = {k: round(v, 4) for k, v in metrics.items()}
    return out


def answer_eval(pipeline: Any, items: Sequence[QAItem], batch: int = 8,
                progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Answer containment of the pipeline's model with retrieval and without, with 95%
    Wilson intervals, and every answer (for reading what the model did)."""
    questions = [i.question for i in items]
    grounded, plain = [], []
    for start in range(0, len(questions), batch):
        part = questions[start:start + batch]
        grounded += pipeline.ask_batch(part)
        plain += pipeline.plain_batch(part)
        if progress is not None:
            progress(len(grounded), len(questions))
    n = len(items)
    hits_with = sum(contains(a.text, i.answer) for a, i in zip(grounded, items, strict=True))
    hits_without = sum(contains(a, i.answer) for a, i in zip(plain, items, strict=True))
    return {
        "with_retrieval": hits_with / max(n, 1), "without_retrieval": hits_without / max(n, 1),
        "with_interval": wilson_interval(hits_with, n),
        "without_interval": wilson_interval(hits_without, n),
        "cited_fraction": sum(bool(a.cited) for a in grounded) / max(n, 1),
        "rows": [{"id": i.id, "question": i.question, "key": i.answer, "with": a.text,
                  "cited": a.cited, "without": p} for i, a, p in zip(items, grounded, plain,
                                                                       strict=True)],
    }
