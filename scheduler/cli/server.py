"""``carbonsched server``: the HTTP API for a team (FastAPI + uvicorn, ``carbonsched[server]``)."""
from __future__ import annotations

import argparse
import math

from carbonsched.errors import UserInputError

EPILOG = """\
The server plans, stores and launches for every team whose tokens it accepts; jobs go into the
configured store (CARBONSCHED_DATABASE_URL for a team's PostgreSQL; agents on other machines share
it). Routes, scopes and error codes: `python -m pydoc carbonsched.server.app`; the OpenAPI document
is served at /openapi.json (and /docs).

examples:
  carbonsched token create --team ml-research --scope submit
  CARBONSCHED_DATABASE_URL=postgresql://carbonsched@db/carbonsched carbonsched server --host 0.0.0.0 --port 8080
  curl -H "Authorization: Bearer $TOKEN" -d @job.json localhost:8080/v1/plan
"""


def _json_logging(level: str) -> None:
    import logging
    import sys

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("carbonsched.server")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False


def cmd_server(a: argparse.Namespace) -> int:
    if not 0 < a.port < 65536:
        raise UserInputError("--port must be between 1 and 65535")
    for name in ("rate_limit", "burst"):
        value = getattr(a, name)
        if not math.isfinite(value) or value < 0:
            raise UserInputError(f"--{name.replace('_', '-')} must be a number >= 0")
    if not 1 <= a.workers <= 64:
        raise UserInputError("--workers must be between 1 and 64")
    if a.max_body_kib <= 0:
        raise UserInputError("--max-body-kib must be > 0")
    try:
        import uvicorn

        from carbonsched.server.app import ServerConfig, create_app
    except ImportError as exc:
        raise UserInputError(f"the server needs its extra ({exc.name} is missing): pip install 'carbonsched[server]'") from None
    from carbonsched.run.store import Store
    from carbonsched.settings import resolve_settings

    settings = resolve_settings()
    target = Store.target_for(settings)
    Store(target).close()  # fail now, with the store's own message, rather than on the first request
    _json_logging(a.log_level)
    limits = dict(max_body_bytes=a.max_body_kib * 1024, rate_per_s=a.rate_limit, burst=max(a.burst, 1.0))
    common = dict(host=a.host, port=a.port, access_log=False, log_level=a.log_level, proxy_headers=True)
    if a.workers == 1:
        uvicorn.run(create_app(ServerConfig(store_target=target, settings=settings, **limits)), **common)
        return 0
    import os

    from carbonsched.server.app import ENV_LIMITS

    for key, (name, _) in ENV_LIMITS.items():  # the worker processes build their app from these
        os.environ[name] = str(limits[key])
    os.environ["CARBONSCHED_API_LOG_LEVEL"] = a.log_level
    _run_workers(uvicorn, a.workers, common)
    return 0


def _run_workers(uvicorn, workers: int, common: dict) -> None:
    """``uvicorn.run(..., workers=N)``, but with TCP_NODELAY on the listening socket: uvicorn binds
    it with protocol 0, so asyncio does not recognise the accepted connections as TCP and leaves
    Nagle on; the answer's body then waits for the client's delayed ACK (+40 ms per request,
    measured). Linux passes the option on to every accepted connection."""
    import socket

    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config("carbonsched.server.app:app_from_env", factory=True, workers=workers, **common)
    sock = config.bind_socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    import inspect

    if "target" in inspect.signature(Multiprocess).parameters:  # older uvicorn (0.35, as SkyPilot 0.14 installs)
        Multiprocess(config, target=uvicorn.Server(config=config).run, sockets=[sock]).run()
    else:
        Multiprocess(config, sockets=[sock]).run()


def register(sub, common) -> None:
    p = sub.add_parser("server", parents=[common], help="the HTTP API for a team (plan, jobs, reports; scoped tokens)",
                       description="Serve carbonsched over HTTP: /v1/plan, /v1/jobs, /v1/regions, /v1/forecast, "
                                   "/v1/reports, /v1/ledger; /healthz, /readyz, /metrics.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--rate-limit", type=float, default=20.0, metavar="PER_S",
                   help="requests per second per token (default 20; 0 = no limit)")
    p.add_argument("--burst", type=float, default=40.0, help="requests a token may send at once (default 40)")
    p.add_argument("--max-body-kib", type=int, default=1024, help="largest request body (default 1024 KiB)")
    p.add_argument("--workers", type=int, default=1,
                   help="server processes on this port (default 1); planning is CPU-bound, so one per core "
                        "plans that many requests at once (rate limits then count per worker)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_server)
