"""Ask a store: retrieve → fit the passages into the context → generate → parse citations.

`RagPipeline.ask` answers one question; `RagSession` keeps a conversation in which every
turn is grounded (what `parrot chat --rag` runs): earlier turns are kept as they were said,
passages are retrieved for the newest question only and go into the newest user message.
The language model is any object with `.engine` (infer.Engine) and `.template`
(chat.ChatTemplate), such as `parrot.load(...)`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from parrot.infer.sampling import SamplingParams
from parrot.rag.embedder import Embedder
from parrot.rag.prompt import RULES, build_messages, citations, fit_passages, prompt_ids
from parrot.rag.retrieve import DEFAULT_MODE, Hit, check_k, check_mode, check_question, search
from parrot.rag.store import NO_FILTERS, Filters, Store


@dataclass(frozen=True)
class Answer:
    """A grounded answer: its text, the passages it was given, and those it cited."""

    question: str
    text: str
    passages: list[Hit]
    cited: list[int]
    prompt_tokens: int = 0

    @property
    def sources(self) -> list[Hit]:
        return [self.passages[n - 1] for n in self.cited]

    def to_dict(self) -> dict:
        return {"question": self.question, "answer": self.text, "cited": self.cited,
                "passages": [h.to_dict() for h in self.passages],
                "prompt_tokens": self.prompt_tokens}


@dataclass
class RagPipeline:
    """A store, its embedder and a chat model, with the retrieval settings."""

    store: Store
    embedder: Embedder
    llm: Any
    k: int = 4
    mode: str = DEFAULT_MODE
    filters: Filters = NO_FILTERS
    params: SamplingParams = field(default_factory=lambda: SamplingParams(
        temperature=0.0, max_new_tokens=256))
    rules: str = RULES
    root: str | None = None

    def __post_init__(self) -> None:
        check_k(self.k)
        self.mode = check_mode(self.mode)
        self.params = self.params.replace(stop=tuple(self.params.stop) + self.llm.template.stop)

    def retrieve(self, question: str) -> list[Hit]:
        return search(self.store, self.embedder, question, self.k, self.mode, self.filters)

    def prompt(self, question: str, hits: Sequence[Hit],
               history: Sequence[dict] = ()) -> tuple[list[int], list[Hit]]:
        """The prompt's ids and the passages that fit in the context (best first)."""
        def ids(chosen: Sequence[Hit]) -> list[int]:
            messages = build_messages(question, chosen, history, self.rules, self.root)
            return prompt_ids(messages, self.llm.engine.tokenizer, self.llm.template)

        engine = self.llm.engine
        room = engine.max_len - min(self.params.max_new_tokens, engine.max_len // 2)
        kept = fit_passages(hits, lambda chosen: len(ids(chosen)), room)
        return ids(kept), kept

    def stream(self, question: str, history: Sequence[dict] = (),
               hits: Sequence[Hit] | None = None) -> Iterator[str | Answer]:
        """Text deltas of the answer, then the finished `Answer` as the last item."""
        check_question(question, self.embedder)
        hits = self.retrieve(question) if hits is None else list(hits)
        ids, kept = self.prompt(question, hits, history)
        stream = self.llm.engine.stream(ids, self.params)
        parts = []
        for delta in stream:
            parts.append(delta)
            yield delta
        text = "".join(parts).strip()
        yield Answer(question, text, kept, citations(text, len(kept)), len(ids))

    def ask(self, question: str, history: Sequence[dict] = ()) -> Answer:
        *_, answer = self.stream(question, history)
        return answer

    def ask_batch(self, questions: Sequence[str]) -> list[Answer]:
        """Grounded answers to several questions, decoded together by the engine."""
        prompts = [self.prompt(q, self.retrieve(check_question(q, self.embedder)))
                   for q in questions]
        done = self.llm.engine.generate_batch([ids for ids, _ in prompts], self.params)
        return [Answer(q, c.text.strip(), kept, citations(c.text, len(kept)), len(ids))
                for q, (ids, kept), c in zip(questions, prompts, done, strict=True)]

    def plain_batch(self, questions: Sequence[str]) -> list[str]:
        """The model's answers with no retrieval and no rules (the evaluation's baseline)."""
        tokenizer, template = self.llm.engine.tokenizer, self.llm.template
        prompts = [prompt_ids([{"role": "user", "content": q}], tokenizer, template)
                   for q in questions]
        return [c.text.strip() for c in self.llm.engine.generate_batch(prompts, self.params)]


class RagSession:
    """A conversation where each user turn is answered from freshly retrieved passages."""

    def __init__(self, pipeline: RagPipeline, max_turns: int = 6) -> None:
        self.pipeline = pipeline
        self.history: list[dict[str, str]] = []
        self.max_turns = max_turns
        self.last: Answer | None = None

    def answer(self, text: str, out: TextIO | None = None) -> Answer:
        """The grounded reply to `text`, streamed into `out` when given."""
        history = self.history[-2 * self.max_turns:]
        answer = None
        for item in self.pipeline.stream(text, history):
            if isinstance(item, Answer):
                answer = item
            elif out is not None:
                out.write(item)
                out.flush()
        if out is not None:
            out.write("\n")
        self.history += [{"role": "user", "content": text},
                         {"role": "assistant", "content": answer.text}]
        self.last = answer
        return answer

    def reset(self) -> None:
        self.history = []
