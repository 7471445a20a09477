"""`parrot chat --rag STORE`: every turn answered from passages retrieved for it.

Each user line retrieves its own passages (the newest question only); earlier turns stay in
the conversation as they were said. After each answer the cited sources are printed.
Commands: /reset (forget the turns), /quit.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from parrot.errors import ParrotError


def run_rag_chat(args: argparse.Namespace, llm: Any, params: Any, lines: Iterable[str],
                 note: Callable[[str], None]) -> int:
    from parrot.api import home
    from parrot.cli.rag import print_sources
    from parrot.rag import RagPipeline, RagSession, embedder_for, open_store

    store = open_store(args.rag, create=False)
    pipeline = RagPipeline(store, embedder_for(store, home=home()), llm, k=args.k,
                           mode=args.mode, params=params, root=str(Path.cwd()))
    session = RagSession(pipeline)
    if sys.stdin.isatty():
        note(f"chatting with {args.model}, grounded in {store.location} ({store.count()} "
             "chunks); /reset, /quit")
    for line in lines:
        line = line.strip()
        if not line:
            continue
        if line in ("/quit", "/exit"):
            break
        if line == "/reset":
            session.reset()
            note("(conversation cleared)")
            continue
        try:
            answer = session.answer(line, sys.stdout)
        except ParrotError as err:  # e.g. a question too long: keep the session going
            note(f"parrot: error: {err.message}")
            continue
        print_sources(answer)
    return 0
