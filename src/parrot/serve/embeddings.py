"""POST /v1/embeddings in OpenAI's shape, served by a sentence encoder beside the chat model.

The embedding model is `ServeSettings.embedding_model` (`parrot serve --embedding-model
MODEL`, default `minilm-l6`; "none" turns the route off). It is a separate model from the
one that generates, loaded on the first embeddings request (pulled first if it is a
registry name not yet pulled), so a server that never embeds never pays for it.

Request: {"model": NAME, "input": str | [str, ...], "encoding_format": "float" | "base64"}.
NAME must be the embedding model's name (the MODEL given, or its last path part).
Response: {"object": "list", "data": [{"object": "embedding", "index": i, "embedding":
[floats] | base64 of little-endian float32}], "model": NAME, "usage": {...}}. The `openai`
client asks for base64 unless told otherwise and decodes it itself.
"""

from __future__ import annotations

import base64
import threading
from typing import Any, Literal

import numpy as np
from fastapi import Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from parrot.errors import ParrotError
from parrot.serve.errors import APIError

MAX_INPUTS = 2048


class EmbeddingRequest(BaseModel):  # unknown fields are ignored (pydantic's default)
    model: str
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


class Embedder:
    """The embedding model, loaded once on first use (thread-safe), then shared."""

    def __init__(self, spec: str, device: str = "cpu", home: str | None = None) -> None:
        self.spec, self.home = spec, home
        self.name = spec.rstrip("/").split("/")[-1]
        self.device = device
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any, int] | None = None

    def loaded(self) -> tuple[Any, Any, int]:
        """(model, tokenizer, max_length), resolving the model on the first call."""
        with self._lock:
            if self._loaded is None:
                from parrot.hub.resolve import resolve_model

                model, tokenizer, info = resolve_model(self.spec, self.device, home=self.home,
                                                       pull_missing=True)
                limit = int(info.extra.get("max_seq_length", model.config.context_length))
                self._loaded = (model, tokenizer, limit)
            return self._loaded

    def embed(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """(embeddings (N, d) float32, total tokens) for `texts`."""
        from parrot.infer.embed import embed_texts
        from parrot.infer.encoder import frame_inputs

        model, tokenizer, limit = self.loaded()
        with self._lock:
            vectors = embed_texts(model, tokenizer, texts, max_length=limit)
        tokens = sum(len(frame_inputs(tokenizer, t, limit)[0]) for t in texts)
        return vectors.numpy().astype(np.float32), tokens


def embedder_of(request: Request) -> Embedder:
    """The app's `Embedder`, created from the settings on first use; 404 when disabled."""
    app_state, settings = request.app.state, request.app.state.parrot.settings
    spec = settings.embedding_model
    if not spec or spec == "none":
        raise APIError(404, "This server has no embedding model; start it with "
                            "--embedding-model MODEL.", code="model_not_found")
    embedder = getattr(app_state, "embedder", None)
    if embedder is None or embedder.spec != spec:
        embedder = app_state.embedder = Embedder(spec, settings.device, settings.home)
    return embedder


def check_request(body: EmbeddingRequest, embedder: Embedder, dim: int | None = None) -> list[str]:
    """The texts to embed; APIError for a wrong model name or unusable input."""
    if body.model not in (embedder.name, embedder.spec):
        raise APIError(404, f"The embedding model '{body.model}' does not exist here; this "
                            f"server embeds with '{embedder.name}'.", param="model",
                       code="model_not_found")
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    if not texts or len(texts) > MAX_INPUTS:
        raise APIError(400, f"input must hold 1 to {MAX_INPUTS} texts.", param="input")
    if any(not t for t in texts):
        raise APIError(400, "input must not contain empty strings.", param="input")
    if body.dimensions is not None and dim is not None and body.dimensions != dim:
        raise APIError(400, f"This model's embeddings have {dim} dimensions; omit "
                            "`dimensions` or ask for exactly that.", param="dimensions")
    return texts


def encode_vector(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    """A float list, or base64 of the little-endian float32 bytes (what OpenAI sends)."""
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


def embeddings_response(vectors: np.ndarray, name: str, tokens: int,
                        encoding_format: str) -> dict[str, Any]:
    data = [{"object": "embedding", "index": i, "embedding": encode_vector(v, encoding_format)}
            for i, v in enumerate(vectors)]
    return {"object": "list", "data": data, "model": name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


async def embeddings(request: Request) -> Any:
    """POST /v1/embeddings."""
    from parrot.serve.routes import read_body

    body = await read_body(request, EmbeddingRequest)
    embedder = embedder_of(request)
    check_request(body, embedder)
    try:
        model, _, _ = await run_in_threadpool(embedder.loaded)
    except ParrotError as err:
        raise APIError(503, f"The embedding model failed to load: {err.message}") from None
    texts = check_request(body, embedder, model.config.d_model)
    try:
        vectors, tokens = await run_in_threadpool(embedder.embed, texts)
    except ParrotError as err:
        raise APIError(400, err.message, param="input") from None
    return embeddings_response(vectors, body.model, tokens, body.encoding_format)
