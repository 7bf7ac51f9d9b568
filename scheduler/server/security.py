"""Request limits in front of the routes: body size, bearer tokens with scopes, per-token rates.

- ``BodyLimit`` (ASGI middleware): a declared ``Content-Length`` over the limit is refused with
  413 before the body is read; a chunked body is read up to the limit and refused the same way
  (the routes then get the body in one piece).
- ``authenticate``: ``Authorization: Bearer cst_...`` checked against the store (``run/tokens``);
  missing, malformed, unknown or revoked -> 401 with ``WWW-Authenticate: Bearer``; a scope below
  the route's -> 403 naming the scope needed.
- ``RateLimiter``: a token bucket per token id (``rate_per_s`` refill, ``burst`` capacity);
  over it -> 429 with ``Retry-After`` in whole seconds.
"""
from __future__ import annotations

import json
import math
import threading
import time


class ApiError(Exception):
    """An HTTP error answer: status, a short machine code and a message that says what to do."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


class RateLimiter:
    def __init__(self, rate_per_s: float, burst: float, clock=time.monotonic):
        self.rate, self.burst, self.clock = rate_per_s, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when the request may go ahead, else the seconds until it could."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    kind, _, value = header.partition(" ")
    return value.strip() if kind.lower() == "bearer" and value.strip() else None


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthenticated", message, {"WWW-Authenticate": "Bearer"})


def check_scope(token, needed: str) -> None:
    if not token.allows(needed):
        raise ApiError(403, "forbidden", f"this token's scope is {token.scope!r}; this request needs {needed!r} "
                                         f"(create one with `carbonsched token create --team {token.team} --scope {needed}`)")


def rate_limited(wait_s: float) -> ApiError:
    return ApiError(429, "rate_limited", f"too many requests for this token; retry in {wait_s:.1f} s",
                    {"Retry-After": str(max(1, math.ceil(wait_s)))})


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` with 413 (see the module docstring)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self._refuse(send)
        chunks, seen = [], 0
        while True:  # read the whole body first (at most max_bytes of it), then hand it on
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                return await self._refuse(send)
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as the server would say it

        await self.app(scope, replay, send)

    async def _refuse(self, send):
        body = json.dumps(ApiError(413, "body_too_large", f"request body over {self.max_bytes} bytes; send a smaller "
                                                            "job or batch").body()).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


