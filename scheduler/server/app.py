"""The HTTP API (FastAPI): routes over the same library calls and JSON documents as the CLI.

Every /v1/ request is authenticated first (401 before its body is read), then rate-limited per
token (429), then its scope checked (403). Routes (scope needed; see ``run/tokens.py``)::

    GET  /healthz                  the process answers (no token)
    GET  /readyz                   the store answers (no token; 503 when it does not)
    GET  /metrics                  Prometheus text (no token; counts only, no job data)
    POST /v1/plan                  plan      {"job": {job file keys}, "now"?, "top"?, "intensity_source"?}
    POST /v1/plan/batch            plan      {"job": [...], "capacity"?, "now"?, "objective"?, "strict"?, ...}
    POST /v1/jobs                  submit    {"job": {...}, "launcher"?, "max_attempts"?, "now"?}  -> 201
    GET  /v1/jobs                  read      ?state=&limit=&cursor=   (the team's jobs, oldest first)
    GET  /v1/jobs/{id}             read      the job document of ``status --json``
    POST /v1/jobs/{id}/cancel      submit
    GET  /v1/jobs/{id}/logs        read      text/plain
    GET  /v1/regions               read      ?gpu=&provider=
    GET  /v1/forecast/{region}     read      ?hours=&now=
    GET  /v1/reports/{id}          read      the disclosure document of ``report --format json``
    GET  /v1/ledger                read      ?since=   the team's planned/measured/baseline totals
    GET  /v1/tokens                admin     the team's tokens (never secrets)
    DELETE /v1/tokens/{id}         admin

Bodies are read by the CLI's own readers (``job_from_dict``, ``batch_from_dict``), so a job file
dumped as JSON is a valid ``job``; the OpenAPI document carries the same JSON Schemas as
``carbonsched schema job|plan``. Errors are ``{"error": {"code", "message"}}``: 400 malformed
JSON, 401/403 auth, 404 unknown (or another team's) job, 413 body too large, 422 a body or job the
planner refuses (unknown keys, impossible deadline, NaN), 429 rate, 503 store unreachable.
Routes are plain functions: FastAPI runs them in its thread pool, each thread with its own store
connection (``Stores``), so one slow plan or launch does not hold the others. Planning is
CPU-bound Python, so one process plans on one core at a time: ``carbonsched server --workers N``
runs N processes (``app_from_env``) on one port; rate limits then apply per worker.

An organisation policy in the server's settings (``policy``, ``CARBONSCHED_POLICY``) is read when
the app is created (a missing or invalid file stops the server from starting; restart it to
change the policy) and enforced on ``POST /v1/plan``, ``/v1/plan/batch`` and ``/v1/jobs``
(``planning.policy_check.enforce_policy``): a job that breaks it is refused with 422 and the rule
in the message, nothing stored; plans record it (``policy_file``).
"""
from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from fastapi import Body, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from carbonsched import __version__
from carbonsched.errors import CarbonschedError, InfeasibleError, UserInputError, did_you_mean
from carbonsched.kubernetes import all_regions
from carbonsched.measure.ledger import build_ledger
from carbonsched.measure.report import disclosure
from carbonsched.measure.totals import team_ledger
from carbonsched.planning.policy_batch import enforce_policy_batch
from carbonsched.planning.policy_check import enforce_policy
from carbonsched.planning.region_forecast import forecast_intensity, forecast_to_dict
from carbonsched.planning.regions import list_regions
from carbonsched.providers.cloud import LAUNCHERS, choose_offering_source, get_launcher
from carbonsched.providers.grid import CHOICES, build_forecast_source
from carbonsched.redact import redact
from carbonsched.run.backends import StoreError
from carbonsched.run.store import STATES, Store, UnknownJobError
from carbonsched.run.submit import cancel, launcher_for_resource, refresh_status, restrict_to_launcher, submit
from carbonsched.run.tokens import list_tokens, revoke_token, verify_token
from carbonsched.run.views import job_to_dict, jobs_to_dict
from carbonsched.server.metrics import CONTENT_TYPE, Metrics
from carbonsched.server.security import (ApiError, BodyLimit, RateLimiter, bearer, check_scope, rate_limited,
                                         unauthorized)
from carbonsched.settings import Settings, resolve_settings
from carbonsched.spec.batch_file import batch_from_dict
from carbonsched.spec.job import job_from_dict
from carbonsched.spec.policy_file import load_policy
from carbonsched.spec.schemas import get_schema
from carbonsched.units import iso_utc, parse_utc

log = logging.getLogger("carbonsched.server")
MAX_LIST = 1000


@dataclass(frozen=True)
class ServerConfig:
    store_target: str | Path
    settings: Settings
    max_body_bytes: int = 1_048_576
    rate_per_s: float = 20.0  # per token; 0 turns the limit off
    burst: float = 40.0
    launcher_factory: Callable | None = None  # default: the settings' launchers (get_launcher)
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)


class Stores:
    """One store connection per worker thread (a connection is one transaction at a time)."""

    def __init__(self, target):
        self.target = target
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[Store] = []

    def get(self) -> Store:
        store = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = Store(self.target)
            with self._lock:
                self._all.append(store)
        return store

    def close(self) -> None:
        with self._lock:
            for store in self._all:
                store.close()
            self._all.clear()


def _fields(payload, allowed: dict[str, type | tuple], required: tuple[str, ...] = ()) -> dict:
    """The body's envelope checked: an object, known keys of the right JSON types, required ones present."""
    if not isinstance(payload, dict):
        raise UserInputError("the request body must be a JSON object")
    for key in payload:
        if key not in allowed:
            hint = did_you_mean(key, sorted(allowed), n=1) or f"; allowed: {', '.join(sorted(allowed))}"
            raise UserInputError(f"unknown key {key!r}{hint}")
        kind = allowed[key]
        value = payload[key]
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            raise UserInputError(f"{key} must be a number, got {json.dumps(value)}")
        if not isinstance(value, kind):
            raise UserInputError(f"{key} has the wrong type ({type(value).__name__})")
        if isinstance(value, float) and not math.isfinite(value):
            raise UserInputError(f"{key} must be finite")
    missing = [k for k in required if k not in payload]
    if missing:
        raise UserInputError(f"missing key(s): {', '.join(missing)}")
    return payload


def _now(body: dict, config: ServerConfig) -> datetime:
    return parse_utc(body["now"], "now") if body.get("now") else config.clock()


def _job(raw) -> object:

    if not isinstance(raw, dict):
        raise UserInputError("job must be an object with a job file's keys (see `carbonsched schema job`)")
    return job_from_dict(raw)


def _settings(config: ServerConfig, source: str | None) -> Settings:
    if source is None:
        return config.settings

    if source not in CHOICES:
        raise UserInputError(f"intensity_source {source!r}: choose one of {', '.join(CHOICES)}")
    return replace(config.settings, intensity_source=source)


def _answer(doc: dict, status: int = 200) -> Response:
    """A document as JSON, encoded once (FastAPI's generic encoder would walk it again first: a plan
    is ~17 KB of nested floats, and that walk cost as much as the HTTP round trip)."""
    return Response(json.dumps(doc, separators=(",", ":")).encode(), status_code=status,
                    media_type="application/json")


def _status(exc: Exception) -> int:
    if isinstance(exc, UnknownJobError):
        return 404
    if isinstance(exc, (InfeasibleError, UserInputError)):
        return 422
    if isinstance(exc, StoreError):
        return 503
    return 502  # a cloud or grid source failed behind us


def _schema(name: str) -> dict:
    schema = get_schema(name)
    schema.pop("$schema", None)
    return schema


def _request_body(schema_name: str | None, properties: dict, required: list[str], answer: str | None = None) -> dict:
    """An OpenAPI requestBody whose ``job`` is the job file's JSON Schema, and (``answer``) a 200
    response with the CLI's ``--json`` schema: one schema source (``carbonsched schema``)."""
    props = dict(properties)
    if schema_name:
        props["job"] = _schema(schema_name)
    doc = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "properties": props, "required": required, "additionalProperties": False}}}}}
    if answer:
        doc["responses"] = {"200": {"description": "the plan, as `carbonsched plan --json` prints it",
                                    "content": {"application/json": {"schema": _schema(answer)}}}}
    return doc


ENV_LIMITS = {"max_body_bytes": ("CARBONSCHED_API_MAX_BODY_BYTES", int),
              "rate_per_s": ("CARBONSCHED_API_RATE_LIMIT", float), "burst": ("CARBONSCHED_API_BURST", float)}


def app_from_env():
    """The app for one of several uvicorn worker processes (``carbonsched server --workers N``):
    settings and the store from the environment as every command reads them, the limits from the
    ``CARBONSCHED_API_*`` variables the server command sets before it starts the workers."""
    settings = resolve_settings()
    limits = {k: kind(os.environ[name]) for k, (name, kind) in ENV_LIMITS.items() if os.environ.get(name)}
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(os.environ.get("CARBONSCHED_API_LOG_LEVEL", "info").upper())
        log.propagate = False
    return create_app(ServerConfig(store_target=Store.target_for(settings), settings=settings, **limits))


def create_app(config: ServerConfig):
    """The ASGI application: the FastAPI routes behind the body-size limit."""
    stores = Stores(config.store_target)
    limiter = RateLimiter(config.rate_per_s, config.burst)
    metrics = Metrics(stores.get)
    app = FastAPI(title="carbonsched", version=__version__,
                  description="Carbon-aware placement and launch of ML training jobs, for a team. "
                              "Authenticate with `Authorization: Bearer <token>` (`carbonsched token create`).")
    app.state.stores = stores
    policy = load_policy(config.settings.policy) if config.settings.policy is not None else None

    def launchers():
        if config.launcher_factory is not None:
            return config.launcher_factory

        cache: dict = {}
        return lambda name: cache.setdefault(name, get_launcher(name, config.settings))

    def authenticate(header: str | None):
        """The token of an ``Authorization`` header, or the 401 to answer."""
        text = bearer(header)
        if text is None:
            raise unauthorized("no bearer token; send `Authorization: Bearer <token>` "
                               "(create one with `carbonsched token create`)")
        token = verify_token(stores.get(), text, config.clock())
        if token is None:
            raise unauthorized("the token is unknown, malformed or revoked")
        return token

    def needs(scope: str):
        def dependency(request: Request):
            token = request.state.token  # set by _observe before the body was read
            wait = limiter.take(token.id)
            if wait:
                raise rate_limited(wait)
            check_scope(token, scope)
            return token
        return dependency

    @app.exception_handler(ApiError)
    def _api_error(request: Request, exc: ApiError):
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(CarbonschedError)
    def _carbonsched_error(request: Request, exc: CarbonschedError):
        status = _status(exc)
        code = {404: "not_found", 422: "invalid", 503: "store_unavailable"}.get(status, "upstream_error")
        return JSONResponse({"error": {"code": code, "message": redact(str(exc))}}, status_code=status)

    @app.exception_handler(RequestValidationError)
    def _validation(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse({"error": {"code": "bad_json", "message": "the request body is not valid JSON"}},
                                status_code=400)
        text = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in errors)
        return JSONResponse({"error": {"code": "invalid", "message": text}}, status_code=422)

    @app.exception_handler(Exception)
    def _internal(request: Request, exc: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": {"code": "internal", "message": "internal error; the server log has the details"}},
                            status_code=500)

    @app.middleware("http")
    async def _observe(request: Request, call_next):
        t0 = time.perf_counter()
        status = 500
        request.state.token = None
        try:
            if request.url.path.startswith("/v1/"):  # authenticated before any body is read or parsed
                try:
                    request.state.token = await run_in_threadpool(authenticate, request.headers.get("authorization"))
                except ApiError as exc:
                    status = exc.status
                    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)
                except CarbonschedError as exc:
                    status = _status(exc)
                    return JSONResponse({"error": {"code": "store_unavailable", "message": redact(str(exc))}},
                                        status_code=status)
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = getattr(request.scope.get("route"), "path", "unmatched")
            metrics.requests.labels(request.method, route, str(status)).inc()
            token = request.state.token
            log.info(json.dumps({"ts": iso_utc(datetime.now(timezone.utc)), "method": request.method, "route": route,
                                 "status": status, "ms": round(1000 * (time.perf_counter() - t0), 1),
                                 "token": token.id if token else None, "team": token.team if token else None}))

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "version": __version__, "pid": os.getpid()}

    @app.get("/readyz")
    def readyz():
        try:
            stores.get().count_by_state()
        except CarbonschedError as exc:
            return JSONResponse({"status": "unavailable", "reason": str(exc)}, status_code=503)
        return {"status": "ready"}

    @app.get("/metrics")
    def metrics_text():
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    plan_props = {"now": {"type": "string"}, "top": {"type": "integer", "minimum": 0},
                  "intensity_source": {"type": "string"}}

    @app.post("/v1/plan", openapi_extra=_request_body("job", plan_props, ["job"], answer="plan"))
    def plan_one(payload=Body(...), token=Depends(needs("plan"))):
        body = _fields(payload, {"job": dict, "now": str, "top": int, "intensity_source": str}, ("job",))
        job = _job(body["job"])
        top = body.get("top", 0 if job.policy.objective == "pareto" else 10)
        if top < 0:
            raise UserInputError("top must be >= 0 (0 returns all)")
        t0 = time.perf_counter()
        result = enforce_policy(job, policy, now=_now(body, config), top=top or None,
                                settings=_settings(config, body.get("intensity_source")))
        metrics.plan_seconds.labels("single").observe(time.perf_counter() - t0)
        return _answer(result.to_dict())

    batch_props = {"capacity": {"type": "object"}, "now": {"type": "string"}, "objective": {"type": "string"},
                   "strict": {"type": "boolean"}, "top_k": {"type": "integer"}, "time_limit_s": {"type": "number"},
                   "intensity_source": {"type": "string"}}

    @app.post("/v1/plan/batch", openapi_extra=_request_body(None, {"job": {"type": "array", "items": {"type": "object"}},
                                                                   **batch_props}, ["job"]))
    def plan_many(payload=Body(...), token=Depends(needs("plan"))):
        body = _fields(payload, {"job": list, "capacity": dict, "now": str, "objective": str, "strict": bool,
                                 "top_k": int, "time_limit_s": (int, float), "intensity_source": str}, ("job",))
        jobs, capacity, default = batch_from_dict({k: body[k] for k in ("job", "capacity") if k in body}, "body")
        limit = float(body.get("time_limit_s", 30.0))
        if not 0 < limit <= 120:
            raise UserInputError("time_limit_s must be in (0, 120]")
        t0 = time.perf_counter()
        result = enforce_policy_batch(jobs, policy, now=_now(body, config), capacity=capacity or None,
                                      default_capacity=default, settings=_settings(config, body.get("intensity_source")),
                                      objective=body.get("objective"), strict=body.get("strict", False),
                                      top_k=body.get("top_k") or None, time_limit_s=limit)
        metrics.plan_seconds.labels("batch").observe(time.perf_counter() - t0)
        return _answer(result.to_dict())

    @app.post("/v1/jobs", status_code=201, openapi_extra=_request_body("job", {
        "launcher": {"type": "string"}, "max_attempts": {"type": "integer", "minimum": 1},
        "now": {"type": "string"}, "intensity_source": {"type": "string"}}, ["job"]))
    def submit_job(payload=Body(...), token=Depends(needs("submit"))):
        body = _fields(payload, {"job": dict, "launcher": str, "max_attempts": int, "now": str, "intensity_source": str},
                       ("job",))
        job = _job(body["job"])
        if not (job.command or job.payload.run or job.image):
            raise UserInputError("a submitted job needs something to run (job.command, or job.run: a bash script)")
        launcher = body.get("launcher", "auto")
        if launcher != "auto" and launcher not in LAUNCHERS:
            raise UserInputError(f"unknown launcher {launcher!r}; choose auto, {', '.join(LAUNCHERS)}")
        attempts = body.get("max_attempts", 3)
        if attempts < 1:
            raise UserInputError("max_attempts must be at least 1")
        now, settings = _now(body, config), _settings(config, body.get("intensity_source"))
        plan = None
        if policy is not None:  # refused before anything is stored; the job is stored as planned, under it
            plan = enforce_policy(restrict_to_launcher(job, launcher), policy, now=now, settings=settings,
                                  top=max(attempts, 10))
            job = plan.job
        store = stores.get()  # submit() confines, plans and checks the plan is launchable, as for the CLI
        stored, _ = submit(job, now=now, settings=settings, store=store, launcher=launcher, plan=plan,
                           launcher_factory=launchers(), max_attempts=attempts, team=token.team)
        return _answer(job_to_dict(store, store.get(stored.id, team=token.team)), 201)

    @app.get("/v1/jobs")
    def list_jobs(state: str | None = None, limit: int = 100, cursor: str | None = None, token=Depends(needs("read"))):
        states = tuple(s for s in (state or "").split(",") if s) or None
        bad = [s for s in states or () if s not in STATES]
        if bad:
            raise UserInputError(f"unknown state(s) {', '.join(bad)}; choose from {', '.join(STATES)}")
        if not 1 <= limit <= MAX_LIST:
            raise UserInputError(f"limit must be between 1 and {MAX_LIST}")
        after = tuple(cursor.split("|", 1)) if cursor else None
        if after is not None and len(after) != 2:
            raise UserInputError("cursor is malformed; pass the next_cursor of the previous page")
        store = stores.get()
        jobs = store.jobs(states, team=token.team, limit=limit, after=after)
        nxt = f"{iso_utc(jobs[-1].created_at)}|{jobs[-1].id}" if len(jobs) == limit else None
        return _answer(jobs_to_dict(store, jobs, next_cursor=nxt))

    @app.get("/v1/jobs/{job_id}")
    def get_job(job_id: str, token=Depends(needs("read"))):
        store = stores.get()
        job = store.get(job_id, team=token.team)
        if job.state == "running":
            job = refresh_status(store, job, launchers(), config.clock())
        return _answer(job_to_dict(store, job))

    @app.post("/v1/jobs/{job_id}/cancel")
    def cancel_job(job_id: str, token=Depends(needs("submit"))):
        store = stores.get()
        job = store.get(job_id, team=token.team)
        return _answer(job_to_dict(store, cancel(store, job.id, launchers(), config.clock())))

    @app.get("/v1/jobs/{job_id}/logs", response_class=PlainTextResponse)
    def job_logs(job_id: str, token=Depends(needs("read"))):
        job = stores.get().get(job_id, team=token.team)
        if not job.resource_id:
            raise ApiError(409, "not_started", f"job {job.id} has not started ({job.state}); no logs yet")
        text = launchers()(launcher_for_resource(job.resource_id)).logs(job.resource_id)
        if text is None:
            raise ApiError(404, "no_logs", f"logs of job {job.id} are not available from the {job.launcher} launcher")
        return PlainTextResponse(text)

    @app.get("/v1/regions")
    def regions(gpu: str | None = None, provider: str | None = None, token=Depends(needs("read"))):
        return _answer({"schema_version": 1, "gpu": gpu, "provider": provider,
                        "regions": list_regions(gpu=gpu, provider=provider,
                                                offerings_source=choose_offering_source(config.settings),
                                                kube_contexts=config.settings.kubernetes_contexts)})

    @app.get("/v1/forecast/{target}")
    def forecast(target: str, hours: int = 48, now: str | None = None, token=Depends(needs("read"))):
        when = parse_utc(now, "now") if now else config.clock()
        return _answer(forecast_to_dict(forecast_intensity(target, now=when, hours=hours, settings=config.settings)))

    @app.get("/v1/reports/{job_id}")
    def report(job_id: str, token=Depends(needs("read"))):
        store = stores.get()
        job = store.get(job_id, team=token.team)
        record = store.load_measurement(job.id)
        ledger = build_ledger(record, source=build_forecast_source(config.settings), region=job.region_id,
                              plan=job.plan, baseline_region=config.settings.default_region,
                              regions=all_regions(config.settings))
        return _answer(disclosure(ledger, record))

    @app.get("/v1/ledger")
    def ledger(since: str | None = None, token=Depends(needs("read"))):
        return _answer(team_ledger(stores.get(), source=build_forecast_source(config.settings), team=token.team,
                                   since=parse_utc(since, "since") if since else None,
                                   baseline_region=config.settings.default_region,
                                   regions=all_regions(config.settings)))

    @app.get("/v1/tokens")
    def tokens(token=Depends(needs("admin"))):
        return {"schema_version": 1, "tokens": [t.to_dict() for t in list_tokens(stores.get(), token.team)]}

    @app.delete("/v1/tokens/{token_id}")
    def revoke(token_id: str, token=Depends(needs("admin"))):
        try:
            return revoke_token(stores.get(), token_id, config.clock(), team=token.team).to_dict()
        except UserInputError as exc:
            raise ApiError(404, "not_found", str(exc)) from None

    return BodyLimit(app, config.max_body_bytes)
