"""nas.serve_proxy's BodyLimit driven by hand as Serve's proxy drives it (ASGI messages), without
Ray: what the application behind it receives, and what the client is answered. The real proxy
is exercised by tests/test_serve.py."""

import asyncio
import json

import pytest

from nas.serve_proxy import MAX_BODY_BYTES, BodyLimit, middlewares

MiB = 2**20


def http_scope(headers: dict[str, str] | None = None) -> dict:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return {"type": "http", "method": "POST", "path": "/predict", "headers": raw}


def run(scope: dict, chunks: list[bytes], disconnect_early: bool = False):
    """Sends `chunks` as the body's messages; returns (what the app received or None if it was not
    called, the response's status or None, the response's JSON, how many body messages were read)."""
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    if disconnect_early:
        messages = messages[:-1] + [{"type": "http.disconnect"}]
    read = 0
    received: list[dict] | None = None
    sent: list[dict] = []

    async def receive():
        nonlocal read
        if read < len(messages):
            read += 1
            return messages[read - 1]
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    async def app(scope, receive, send):
        nonlocal received
        received = []
        while True:
            message = await receive()
            received.append(message)
            if message["type"] == "http.disconnect":
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    asyncio.run(BodyLimit(app)(scope, receive, send))
    status = sent[0]["status"] if sent else None
    answer = json.loads(b"".join(m.get("body", b"") for m in sent[1:])) if sent else None
    return received, status, answer, read


def test_a_body_within_the_limit_reaches_the_app_whole_in_one_message():
    received, status, _, _ = run(http_scope(), [b"a" * MiB, b"b" * MiB, b"c"])
    assert status == 200
    assert received[0] == {"type": "http.request", "body": b"a" * MiB + b"b" * MiB + b"c", "more_body": False}
    assert received[1:] == [{"type": "http.disconnect"}]  # then the server's own messages


def test_exactly_the_limit_passes_and_one_byte_more_does_not():
    received, status, _, _ = run(http_scope(), [b"\0" * MAX_BODY_BYTES])
    assert status == 200 and len(received[0]["body"]) == MAX_BODY_BYTES
    received, status, answer, _ = run(http_scope(), [b"\0" * MAX_BODY_BYTES, b"\0"])
    assert received is None and status == 413
    assert answer == {"error": f"request body: more than {MAX_BODY_BYTES:,} bytes, expected at most that"}


def test_a_declared_length_over_the_limit_is_answered_unread():
    scope = http_scope({"Content-Length": str(40 * MiB)})
    received, status, answer, read = run(scope, [b"\0" * MiB] * 40)
    assert received is None and status == 413 and read == 0
    assert answer == {"error": f"request body: 41,943,040 bytes, expected at most {MAX_BODY_BYTES:,}"}


def test_a_chunked_body_over_the_limit_is_read_only_up_to_it():
    received, status, answer, read = run(http_scope(), [b"\0" * MiB] * 40)
    assert received is None and status == 413 and read == 33  # 33 MiB: the first message past 32
    assert "more than 33,554,432 bytes" in answer["error"]


def test_a_client_gone_before_its_body_ended_reaches_nothing_and_is_not_answered():
    received, status, _, _ = run(http_scope(), [b"x", b"y", b"z"], disconnect_early=True)
    assert received is None and status is None


@pytest.mark.parametrize("kind", ["websocket", "lifespan"])
def test_other_scopes_pass_through(kind):
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    asyncio.run(BodyLimit(app)({"type": kind}, None, None))
    assert seen == [kind]


def test_the_proxy_callback_returns_the_middleware():
    assert [m.cls for m in middlewares()] == [BodyLimit]
