"""What `nas serve` runs inside Ray Serve's HTTP proxy: the request body limit, applied before any
byte of a body is passed on to a replica.

    serve.start(http_options=..., controller_options=CONTROLLER_OPTIONS)   # the proxy applies BodyLimit

Serve's proxy reads a request's whole body from the socket and forwards it to the replica through
Ray's object store, whether or not the application reads it: a body over the limit, answered 413
by a replica, had already been copied into the replica (and into object-store pages mapped into
both processes). Here it is answered 413 by the proxy, and no replica sees it. Serve imports
`middlewares` in each proxy process it starts (RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH, set in
the Serve controller's environment, which its proxies inherit). Imports Starlette only.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 32 * 2**20  # per request; a larger one is answered with 413

CALLBACK_VARIABLE = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
CONTROLLER_OPTIONS = {"runtime_env": {"env_vars": {CALLBACK_VARIABLE: f"{__name__}:middlewares"}}}


def too_large(length: int | None) -> str:
    """The 413 answer's error: the declared length, or only that the limit was passed (chunked)."""
    if length is None:
        return f"request body: more than {MAX_BODY_BYTES:,} bytes, expected at most that"
    return f"request body: {length:,} bytes, expected at most {MAX_BODY_BYTES:,}"


def declared_length(headers: Headers) -> int | None:
    length = headers.get("content-length", "")
    return int(length) if length.isdigit() else None


class BodyLimit:
    """ASGI middleware: reads a request's body up to MAX_BODY_BYTES before the application sees
    it, answers 413 at once when it is longer (by Content-Length, or as it streams), and passes the
    body on as one message otherwise. A replica then never receives more than the limit."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = declared_length(Headers(scope=scope))
        if length is not None and length > self.limit:  # refused unread: the server discards the body
            await JSONResponse({"error": too_large(length)}, status_code=413)(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away before the body ended
                return
            body += message.get("body", b"")
            if len(body) > self.limit:
                del body  # not kept while the answer goes out; the server discards the rest
                await JSONResponse({"error": too_large(None)}, status_code=413)(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        whole: list[Message] = [{"type": "http.request", "body": bytes(body), "more_body": False}]
        del body

        async def replay() -> Message:
            return whole.pop() if whole else await receive()

        await self.app(scope, replay, send)


def middlewares() -> list[Middleware]:
    """Serve's proxy callback (CALLBACK_VARIABLE): the middlewares its HTTP server applies."""
    return [Middleware(BodyLimit)]
