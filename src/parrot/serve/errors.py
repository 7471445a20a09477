"""Errors in the OpenAI shape: {"error": {"message", "type", "param", "code"}} and a status.

A handler raises `APIError`; the app turns it into that JSON body. The status codes follow
the OpenAI API: 400 bad request, 401 key, 404 unknown model, 408 headers or body too
slow, 413 body too large, 429 queue full (with Retry-After), 503 not ready or a request
larger than the server's capacity (with Retry-After), 504 timed out.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
    408: "invalid_request_error",
    413: "invalid_request_error", 429: "rate_limit_error", 500: "server_error",
    503: "service_unavailable", 504: "timeout_error",
}


class APIError(Exception):
    """An error a client receives as an OpenAI error body with an HTTP status."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": _TYPES.get(self.status, "error"),
                          "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def validation_error(errors: list[dict[str, Any]]) -> APIError:
    """The first pydantic validation problem as a 400 naming the parameter."""
    first = errors[0]
    param = ".".join(str(part) for part in first.get("loc", ())) or None
    message = f"Invalid value for '{param}': {first.get('msg', 'invalid')}." if param else \
        f"Invalid request: {first.get('msg', 'invalid')}."
    return APIError(400, message, param=param, code="invalid_value")
