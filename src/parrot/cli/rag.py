"""`parrot rag index|search|ask|eval|qa`: documents → a vector store → cited answers.

    parrot rag index ~/notes docs/ --store notes.db      # again later: only what changed
    parrot rag search notes.db "how do I rotate the logs?" --k 5
    parrot rag ask notes.db "how do I rotate the logs?"
    parrot rag qa --out runs/pyqa                        # the Python-docs QA set
    parrot rag eval notes.db --data runs/pyqa/qa.jsonl   # recall@k, MRR (+ --answers)
    parrot rag index docs/ --store postgresql://user@host/db
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from parrot.errors import ParrotError
from parrot.hub.registry import DEFAULT_MODEL


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("rag", help="index documents, search them, answer from them")
    sub = parser.add_subparsers(dest="rag_command", metavar="COMMAND", required=True)

    p = sub.add_parser("index", help="index files and folders into a store (incremental)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--store", required=True, help="a SQLite file or a postgresql:// DSN")
    p.add_argument("--embed-model", default=None, help="encoder MODEL (default: the store's "
                   "own, minilm-l6 for a new store)")
    p.add_argument("--chunk-tokens", type=int, default=None, help="tokens per chunk (200)")
    p.add_argument("--overlap", type=int, default=32, help="tokens shared by neighbours")
    p.add_argument("--text-field", default="text", help="the JSONL field holding text")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long for another indexer of the store to finish")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=run_index)

    p = sub.add_parser("search", help="the top-k chunks for a query")
    _store_arg(p)
    p.add_argument("query")
    _retrieval_flags(p, k=5)
    p.add_argument("--json", action="store_true", help="print the hits as JSON")
    p.set_defaults(run=run_search)

    p = sub.add_parser("ask", help="answer a question from the store, with citations")
    _store_arg(p)
    p.add_argument("question")
    _retrieval_flags(p, k=4)
    _model_flags(p, max_new_tokens=256)
    p.add_argument("--json", action="store_true", help="print the answer and passages as JSON")
    p.set_defaults(run=run_ask)

    p = sub.add_parser("eval", help="recall@1/5/10 and MRR over a QA set (and answers)")
    _store_arg(p)
    p.add_argument("--data", required=True, help="QA JSONL (question, answer, doc, start, end)")
    p.add_argument("--modes", nargs="+", default=["vector", "keyword", "hybrid"])
    p.add_argument("--answers", action="store_true",
                   help="also score the chat model's answer containment with and without "
                        "retrieval (slow: two generations per question)")
    p.add_argument("--limit", type=int, default=None, help="the first N questions only")
    _retrieval_flags(p, k=4, with_mode=False)
    _model_flags(p, max_new_tokens=64)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.set_defaults(run=run_eval)

    p = sub.add_parser("qa", help="write the Python-reference QA set and its documents")
    p.add_argument("--out", required=True, help="folder: OUT/docs/*.txt and OUT/qa.jsonl")
    p.set_defaults(run=run_qa)


def _store_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", metavar="STORE", help="a SQLite file or a postgresql:// DSN")


def _retrieval_flags(parser: argparse.ArgumentParser, k: int, with_mode: bool = True) -> None:
    from parrot.rag import DEFAULT_MODE, MODES

    parser.add_argument("--k", type=int, default=k, help=f"passages to retrieve ({k})")
    if with_mode:
        parser.add_argument("--mode", default=DEFAULT_MODE, choices=(*MODES, "bm25"),
                            help=f"retrieval mode (default {DEFAULT_MODE})")
    parser.add_argument("--path", default=None, help="only files under this path")
    parser.add_argument("--type", action="append", default=[], metavar="KIND",
                        help="only these file kinds (md, rst, py, pdf, ...; repeatable)")


def _model_flags(parser: argparse.ArgumentParser, max_new_tokens: int) -> None:
    from parrot.cli.generate import add_sampling_flags

    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"chat MODEL ({DEFAULT_MODEL})")
    parser.add_argument("--template", default=None, help="chat template (default: the model's)")
    add_sampling_flags(parser, max_new_tokens=max_new_tokens)
    parser.set_defaults(temperature=0.0)


def filters_from(args: argparse.Namespace):
    """Filters from --path and --type (a suffix like md or .md, or a kind like markdown)."""
    from parrot.rag import Filters
    from parrot.rag.documents import KINDS

    kinds = []
    for given in args.type:
        name = given.lower()
        kind = KINDS.get(name if name.startswith(".") else "." + name, name)
        if kind not in set(KINDS.values()):
            raise ParrotError(f"Unknown file type {given!r}; use one of "
                              f"{', '.join(sorted(set(KINDS.values())))}.")
        kinds.append(kind)
    prefix = None if args.path is None else str(Path(args.path).expanduser().resolve())
    return Filters(prefix, tuple(kinds))


def open_for_reading(spec: str):
    from parrot.rag import open_store

    return open_store(spec, create=False)


def run_index(args: argparse.Namespace) -> int:
    from parrot import rag
    from parrot.api import home

    store = rag.open_store(args.store)
    model = args.embed_model or store.meta().get("model") or rag.DEFAULT_EMBED_MODEL
    report = rag.index(args.paths, store, embed_model=model, home=home(),
                       chunk_tokens=args.chunk_tokens, overlap=args.overlap,
                       text_field=args.text_field, wait_s=args.wait,
                       show_progress=sys.stderr.isatty())
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print(f"{report.files} files: {report.indexed} indexed, {report.unchanged} unchanged, "
              f"{report.removed} removed, {report.skipped} skipped; {report.chunks} chunks "
              f"embedded in {report.seconds:.1f} s ({report.chunks_per_s:.1f} chunks/s); "
              f"the store holds {store.count()} chunks")
    return 0


def run_search(args: argparse.Namespace) -> int:
    from parrot import rag
    from parrot.api import home

    hits = rag.search(open_for_reading(args.store), args.query, args.k, args.mode,
                      filters_from(args), home=home())
    if args.json:
        print(json.dumps([h.to_dict() for h in hits], ensure_ascii=False))
        return 0
    for hit in hits:
        print(f"{hit.rank:>2}  {hit.score:.4f}  {hit.path}:{hit.start}-{hit.end}")
        print("    " + " ".join(hit.text.split())[:200])
    if not hits:
        print("(no chunk matched)")
    return 0


def _pipeline(args: argparse.Namespace, store, mode: str, max_batch: int = 1):
    from parrot.api import home, load
    from parrot.cli.generate import sampling_params
    from parrot.rag import RagPipeline, embedder_for

    embedder = embedder_for(store, home=home())
    llm = load(args.model, quantize=getattr(args, "quantize", "auto"), max_batch=max_batch,
               template=args.template)
    return RagPipeline(store, embedder, llm, k=args.k, mode=mode, filters=filters_from(args),
                       params=sampling_params(args), root=str(Path.cwd()))


def print_sources(answer, out=sys.stdout) -> None:
    from parrot.rag.prompt import source_label

    root = str(Path.cwd())
    if answer.cited:
        print("Sources:", file=out)
        for n in answer.cited:
            print(f"  [{n}] {source_label(answer.passages[n - 1], root)}", file=out)
    else:
        print("Sources: (the answer cites no passage; it was given:)", file=out)
        for n, hit in enumerate(answer.passages, 1):
            print(f"  [{n}] {source_label(hit, root)}", file=out)


def run_ask(args: argparse.Namespace) -> int:
    from parrot.rag import Answer

    pipeline = _pipeline(args, open_for_reading(args.store), args.mode)
    answer = None
    for item in pipeline.stream(args.question):
        if isinstance(item, Answer):
            answer = item
        elif not args.json:
            sys.stdout.write(item)
            sys.stdout.flush()
    if args.json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False))
        return 0
    print()
    print_sources(answer)
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from parrot.api import home
    from parrot.rag import embedder_for
    from parrot.rag.eval import answer_eval, retrieval_eval
    from parrot.rag.qa import read_qa
    from parrot.utils.atomic import atomic_write_json

    items = read_qa(args.data)[:args.limit]
    store = open_for_reading(args.store)
    embedder = embedder_for(store, home=home())
    result = {"store": store.location, "questions": len(items),
              "retrieval": retrieval_eval(store, embedder, items, args.modes, filters_from(args))}
    for mode, metrics in result["retrieval"].items():
        print(f"{mode:>8}: " + "  ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    if args.answers:
        pipeline = _pipeline(args, store, "hybrid", max_batch=8)
        result["answers"] = answer_eval(pipeline, items)
        a = result["answers"]
        print(f"answer containment: with retrieval {a['with_retrieval']:.3f}, without "
              f"{a['without_retrieval']:.3f} ({len(items)} questions)")
    if args.out:
        atomic_write_json(args.out, result)
    return 0


def run_qa(args: argparse.Namespace) -> int:
    from parrot.rag.qa import build_qa, write_corpus, write_qa

    out = Path(args.out)
    docs = write_corpus(out / "docs")
    items = build_qa()
    write_qa(out / "qa.jsonl", items)
    print(f"wrote {len(docs)} documents to {out / 'docs'} and {len(items)} questions to "
          f"{out / 'qa.jsonl'}")
    return 0
