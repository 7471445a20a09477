"""The FastAPI application: settings, the shared state, the route table and error handling.

Routes are listed in one table (`ROUTES`), so a new endpoint such as POST /v1/embeddings is
one handler and one row. The model loads in a background thread at start-up; until it is
ready every API route answers 503, and /health says "loading".
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from parrot.infer import Engine
from parrot.serve import embeddings, routes
from parrot.serve.errors import APIError
from parrot.serve.limits import key_matches
from parrot.serve.worker import Loaded, Worker

STATIC = Path(__file__).parent / "static"


@dataclass(frozen=True)
class ServeSettings:
    """How the server runs. `api_key=None` leaves the API open (fine on loopback only)."""

    model_name: str = "parrot"
    api_key: str | None = None
    max_batch: int = 8
    max_queue: int = 64
    timeout: float = 600.0
    max_body_bytes: int = 4 * 1024 * 1024
    body_timeout: float = 30.0  # seconds for a whole request body to arrive (408 after)
    # Origins whose web pages may call the API (CORS); empty: no cross-origin access.
    cors_origins: tuple[str, ...] = ()
    # The sentence encoder behind POST /v1/embeddings, loaded on first use (None: no route).
    embedding_model: str | None = None
    device: str = "cpu"
    home: str | None = None  # where pulled models live (None: parrot's default)


class ServerState:
    """What handlers share: settings, and once loaded the model, tokenizer and worker."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.loaded: Loaded | None = None
        self.worker: Worker | None = None
        self.load_error: str | None = None

    def load(self, loader: Callable[[], Loaded]) -> None:
        try:
            loaded = loader()
            engine = loaded.engine or Engine(loaded.model, loaded.tokenizer,
                                             max_batch=self.settings.max_batch)
            worker = Worker(engine, self.settings.max_queue, self.settings.timeout)
            worker.start()
        except Exception as err:  # noqa: BLE001 - reported by /health and every route
            self.load_error = str(getattr(err, "message", err))
            return
        self.worker, self.loaded = worker, loaded

    def ready(self) -> tuple[Loaded, Worker]:
        if self.loaded is None or self.worker is None:
            if self.load_error:
                raise APIError(503, f"The model failed to load: {self.load_error}")
            raise APIError(503, "The model is still loading; retry in a moment.",
                           headers={"Retry-After": "1"})
        return self.loaded, self.worker


ROUTES: list[tuple[str, str, Callable[..., Any]]] = [
    ("GET", "/health", routes.health),
    ("GET", "/v1/models", routes.list_models),
    ("POST", "/v1/chat/completions", routes.chat_completions),
    ("POST", "/v1/completions", routes.completions),
    ("POST", "/tokenize", routes.tokenize),
    ("POST", "/detokenize", routes.detokenize),
    ("GET", "/tokenizer_info", routes.tokenizer_info),
    ("POST", "/v1/embeddings", embeddings.embeddings),
]


def create_app(loader: Callable[[], Loaded], settings: ServeSettings | None = None,
               on_load_error: Callable[[str], None] | None = None) -> FastAPI:
    """The server application; `loader` runs in a background thread when the app starts.

    `on_load_error(message)` is called on that thread if loading fails (the CLI stops the
    server then); without it the server stays up and answers 503 with the reason.
    """
    state = ServerState(settings or ServeSettings())

    def load_in_background() -> None:
        state.load(loader)
        if state.load_error and on_load_error is not None:
            on_load_error(state.load_error)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        threading.Thread(target=load_in_background, daemon=True).start()
        yield
        if state.worker is not None:
            state.worker.stop()

    app = FastAPI(title="parrot", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.parrot = state
    for method, path, handler in ROUTES:
        app.add_api_route(path, handler, methods=[method])
    app.add_api_route("/", lambda: FileResponse(STATIC / "index.html"), methods=["GET"],
                      include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _add_guards(app, state)
    if state.settings.cors_origins:  # closed unless asked for: no header, no preflight
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(state.settings.cors_origins),
                           allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type"])
    return app


def _add_guards(app: FastAPI, state: ServerState) -> None:
    """API key check, and every error (ours, routing's) in the OpenAI shape."""

    @app.middleware("http")
    async def check_key(request: Request, call_next):
        key = state.settings.api_key
        path = request.url.path
        # The API needs the key; /health, /tokenizer_info and the page stay open.
        guarded = path.startswith("/v1/") or path in {"/tokenize", "/detokenize"}
        if key and guarded:
            if not key_matches(request.headers.get("authorization", ""), key):
                return APIError(401, "Incorrect or missing API key; send it as "
                                     "'Authorization: Bearer KEY'.",
                                code="invalid_api_key").response()
        return await call_next(request)

    @app.exception_handler(APIError)
    async def api_error(request: Request, err: APIError) -> JSONResponse:
        return err.response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        return APIError(err.status_code, str(err.detail)).response()
