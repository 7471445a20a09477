"""`parrot serve [MODEL]`: an OpenAI-compatible server and a chat page on http://HOST:PORT/."""

from __future__ import annotations

import argparse

from parrot.errors import ParrotError
from parrot.hub.registry import DEFAULT_MODEL


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="serve a model over the OpenAI API and a web page")
    parser.add_argument("model", metavar="MODEL", nargs="?", default=DEFAULT_MODEL,
                        help=f"a run directory or a pulled model name (default: {DEFAULT_MODEL})")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", default=None,
                        help="require 'Authorization: Bearer KEY' on API routes")
    parser.add_argument("--max-batch", type=int, default=8,
                        help="requests decoded together in one batch")
    parser.add_argument("--max-queue", type=int, default=64,
                        help="requests waiting beyond the batch before answering 429")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds a request may run before it is cancelled")
    parser.add_argument("--template", default=None,
                        help="chat template (default: the model's own, else plain)")
    parser.add_argument("--name", default=None, help="the model name clients send "
                        "(default: MODEL's last path part)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quantize", default="auto", choices=("auto", "none", "int8", "int4"),
                        help="weight-only quantization for generation (default auto, on a CPU: "
                        "int4 for a Q4_1 GGUF, int8 otherwise)")
    parser.add_argument("--embedding-model", default="minilm-l6", metavar="MODEL",
                        help="sentence encoder for POST /v1/embeddings, loaded (and pulled) "
                        "on its first request; 'none' turns the route off (default: minilm-l6)")
    parser.add_argument("--cors-origin", dest="cors_origins", action="append", default=[],
                        metavar="ORIGIN", help="let web pages from ORIGIN (e.g. "
                        "http://localhost:3000) call the API; repeatable (default: none)")
    parser.add_argument("--rag", default=None, metavar="STORE",
                        help="ground chat completions in this store (a `parrot rag index` "
                             "SQLite file or postgresql:// DSN) and serve POST /v1/rag/search")
    parser.add_argument("--rag-k", type=int, default=4, help="passages per answer with --rag")
    parser.add_argument("--rag-mode", default="hybrid", choices=("hybrid", "vector", "keyword"),
                        help="retrieval mode with --rag")
    parser.set_defaults(run=run)


def _check(args: argparse.Namespace) -> None:
    for flag, value, low in (("--max-batch", args.max_batch, 1), ("--max-queue", args.max_queue, 0),
                             ("--port", args.port, 0)):
        if value < low:
            raise ParrotError(f"{flag} must be at least {low}, got {value}.")
    if args.timeout <= 0:
        raise ParrotError(f"--timeout must be a positive number of seconds, got {args.timeout}.")


def _enable_rag(app, args: argparse.Namespace) -> None:
    """Check the store now (a missing one is an error before the server starts), then
    add the retrieval routes (parrot/serve/rag.py)."""
    from parrot.api import home
    from parrot.rag import open_store
    from parrot.serve.rag import enable_rag

    if args.rag_k < 1:
        raise ParrotError(f"--rag-k must be at least 1, got {args.rag_k}.")
    store = open_store(args.rag, create=False)
    if not store.meta().get("model"):
        raise ParrotError(f"{store.location} holds no index yet; build it with "
                          f"`parrot rag index FOLDER --store {args.rag}`.")
    store.close()
    enable_rag(app, args.rag, str(home()), args.rag_k, args.rag_mode)


def run(args: argparse.Namespace) -> int:
    _check(args)
    try:
        import uvicorn

        from parrot.serve import Loaded, ServeSettings, create_app
        from parrot.serve.limits import server_config
    except ImportError as err:
        raise ParrotError(f"parrot serve needs FastAPI and uvicorn ({err.name} is missing); "
                          "install them with pip install fastapi uvicorn.") from None
    from parrot.api import home
    from parrot.cli.generate import load_llm

    def load() -> Loaded:  # the same loading as `parrot generate` (names, GGUF, HF, runs)
        llm = load_llm(args, max_batch=args.max_batch)
        return Loaded(llm.model, llm.tokenizer, llm.template, engine=llm.engine)

    name = args.name or args.model.rstrip("/").split("/")[-1]
    settings = ServeSettings(model_name=name, api_key=args.api_key, max_batch=args.max_batch,
                             max_queue=args.max_queue, timeout=args.timeout,
                             embedding_model=args.embedding_model, device=args.device,
                             home=str(home()), cors_origins=tuple(args.cors_origins))
    print(f"parrot: serving {name} on http://{args.host}:{args.port}/ (loading the model)",
          flush=True)
    server: uvicorn.Server | None = None

    def stop(message: str) -> None:  # loading failed: shut the server down, report below
        server.should_exit = True

    app = create_app(load, settings, on_load_error=stop)
    if args.rag:
        _enable_rag(app, args)
    server = uvicorn.Server(server_config(app, args.host, args.port))
    server.run()
    error = app.state.parrot.load_error
    if error:
        raise ParrotError(f"Could not serve {args.model}: {error}")
    return 0
