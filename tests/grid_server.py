"""A local HTTP server for testing network clients against recorded payloads (no internet).

Routes map ``"METHOD /path"`` (query string excluded) to a reply or a list of replies::

    with GridServer({"GET /v3/forecast": (200, {}, {"data": [...]}),
                     "GET /login": [(503, {"Retry-After": "1"}, ""), (200, {}, {"token": "t"})]}) as srv:
        requests.get(srv.url + "/v3/forecast")
        srv.requests[0].headers["Authorization"]

A reply is ``(status, headers, body)``: a dict/list body is sent as JSON, str/bytes as is, a
``pathlib.Path`` as the file's bytes. Faults a hostile or broken server shows: ``Trickle(body,
every_s)`` sends the body a byte at a time, ``Truncated(body, n)`` promises the whole body but
sends ``n`` bytes and hangs up, ``Reset()`` answers with a TCP reset, ``Stall(seconds)`` accepts
and says nothing. A list of replies is served in order, its last one
repeating. A callable gets the ``Recorded`` request and returns a reply. Unknown routes get 404
with a JSON error. Every request is recorded (method, path, query, headers, body) for assertions.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]  # last value of each parameter
    headers: dict[str, str]  # keys lower-cased
    body: bytes = b""
    raw_query: dict[str, list[str]] = field(default_factory=dict)


def _encode(body) -> tuple[bytes, str]:
    if isinstance(body, Path):
        return body.read_bytes(), "application/json"
    if isinstance(body, (dict, list)):
        return json.dumps(body).encode(), "application/json"
    if isinstance(body, bytes):
        return body, "application/octet-stream"
    return str(body).encode(), "text/plain; charset=utf-8"


@dataclass
class Trickle:
    body: object
    every_s: float = 0.2


@dataclass
class Truncated:
    body: object
    n: int = 10


@dataclass
class Reset:
    pass


@dataclass
class Stall:
    seconds: float = 30.0


def _fault(handler, status: int, headers: dict, fault) -> None:
    import socket
    import struct
    import time

    if isinstance(fault, Reset):
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.connection.close()
        handler.close_connection = True
        return
    if isinstance(fault, Stall):
        time.sleep(fault.seconds)
        handler.close_connection = True
        return
    data, ctype = _encode(fault.body)
    handler.send_response(status)
    for k, v in {"Content-Type": ctype, **headers}.items():
        handler.send_header(k, v)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    try:
        if isinstance(fault, Truncated):
            handler.wfile.write(data[:fault.n])
            handler.wfile.flush()
        else:
            for i in range(len(data)):
                handler.wfile.write(data[i:i + 1])
                handler.wfile.flush()
                time.sleep(fault.every_s)
    except OSError:
        pass  # the client gave up: that is the point
    handler.close_connection = True


class GridServer:
    """Threaded HTTP server on 127.0.0.1 (a free port) serving canned replies; a context manager."""

    def __init__(self, routes: dict | None = None):
        self.routes: dict = dict(routes or {})
        self.requests: list[Recorded] = []
        self._served: dict[str, int] = {}
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def hits(self, route: str) -> list[Recorded]:
        """The recorded requests for ``"METHOD /path"``."""
        method, path = route.split(" ", 1)
        return [r for r in self.requests if r.method == method and r.path == path]

    def _reply(self, rec: Recorded):
        key = f"{rec.method} {rec.path}"
        with self._lock:
            self.requests.append(rec)
            spec = self.routes.get(key)
            if spec is None:
                return 404, {}, {"error": "not found", "message": f"no route {key}"}
            if isinstance(spec, list):
                i = self._served.get(key, 0)
                self._served[key] = i + 1
                spec = spec[min(i, len(spec) - 1)]
        return spec(rec) if callable(spec) else spec

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self):
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = parse_qs(parts.query, keep_blank_values=True)
                rec = Recorded(method=self.command, path=parts.path, query={k: v[-1] for k, v in raw.items()},
                               headers={k.lower(): v for k, v in self.headers.items()},
                               body=self.rfile.read(length) if length else b"", raw_query=raw)
                status, headers, body = server._reply(rec)
                if isinstance(body, (Trickle, Truncated, Reset, Stall)):
                    return _fault(self, status, dict(headers), body)
                data, ctype = _encode(body)
                self.send_response(status)
                headers = dict(headers)
                headers.setdefault("Content-Type", ctype)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, *args):  # keep test output quiet
                pass

        return Handler

    def start(self) -> "GridServer":
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        httpd = self._httpd  # short poll so stop() returns quickly
        self._thread = threading.Thread(target=lambda: httpd.serve_forever(poll_interval=0.02), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "GridServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class ServedFake:
    """Base of the fake cloud APIs built on a GridServer (``self.server``): a context manager that
    starts and stops it, with its ``url``."""

    server: GridServer

    def __enter__(self):
        self.server.start()
        return self

    def __exit__(self, *exc):
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url
