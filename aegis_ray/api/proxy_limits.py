"""The REST body limit, enforced in Ray Serve's HTTP proxy before a body is read.

Serve's proxy reads a request's body into a queue for the replica as fast as the client sends
it, so a limit checked in the replica comes after the proxy has held the whole body. This
middleware runs in the proxy itself (`proxy_middlewares`, loaded there through
RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH, which `aegis up` sets in the environment of
`ray start`): it refuses a body over the limit by its Content-Length before reading a byte, and
reads a body without one no further than the limit. It imports nothing heavy: it is loaded into
every proxy process.
"""

from __future__ import annotations

import json
import os
from typing import Any

# The default: a manifest may be 1 MiB (control_plane.MAX_MANIFEST_BYTES); the rest of a
# request (JSON around it, other bodies) is far smaller.
MAX_BODY_BYTES = (1 << 20) + (64 << 10)
BODY_LIMIT_ENV = "AEGIS_MAX_BODY_BYTES"


class BodyLimit:
    """Pure ASGI middleware: 413 for a body over `limit` bytes, decided from Content-Length
    before a byte of it is read; a body without Content-Length is read (up to the limit, then
    refused) before the request goes on, so no more than `limit` bytes are ever held."""

    def __init__(self, app: Any, limit: int | None = None) -> None:
        self.app = app
        self.limit = limit if limit is not None else body_limit()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                await _refuse(send, 400, "bad_request", "Content-Length is not a number")
                return
            if size > self.limit:
                await _refuse(send, 413, "too_large", self._message(f"{size} bytes"))
                return
            await self.app(scope, receive, send)
            return
        if scope.get("method") in ("GET", "HEAD", "DELETE", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        # Chunked: read it here, bounded, then replay it.
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            total += len(message.get("body", b""))
            if total > self.limit:
                await _refuse(send, 413, "too_large", self._message(f"over {self.limit} bytes"))
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _message(self, size: str) -> str:
        return f"request body of {size}: the limit is {self.limit} bytes"


async def _refuse(send: Any, status: int, error: str, message: str) -> None:
    body = json.dumps({"error": error, "message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def body_limit() -> int:
    raw = os.environ.get(BODY_LIMIT_ENV)
    if not raw:
        return MAX_BODY_BYTES
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{BODY_LIMIT_ENV}={raw!r}: expected a number of bytes") from None
    if value < 1024:
        raise ValueError(f"{BODY_LIMIT_ENV}={raw!r}: at least 1024 bytes")
    return value


def proxy_middlewares() -> list[Any]:
    """Serve's HTTP proxy callback (RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH): Starlette
    middlewares the proxy wraps around every request, before any body is read."""
    from starlette.middleware import Middleware

    return [Middleware(BodyLimit)]
