"""The CLI's client for ``carbonsched server`` (``CARBONSCHED_SERVER`` + ``CARBONSCHED_TOKEN``).

With ``CARBONSCHED_SERVER=https://carbonsched.internal`` set, ``submit``, ``status``, ``list``,
``cancel``, ``logs`` and ``report`` go through the API instead of a local store (``plan`` stays
local unless given ``--server``). The answers are the same documents the local commands print
with ``--json``, so the CLI renders them the same way.

Errors keep the server's message and map to the CLI's exit codes: 401/403 -> ``ConfigError``
(exit 2: the token is missing, wrong or lacks the scope), 404 -> ``UnknownJobError``, 4xx ->
``UserInputError``, 5xx or no answer -> ``RemoteError`` (exit 1, naming the server). The token is
sent only in the ``Authorization`` header and never printed. Only ``requests`` is needed.
"""
from __future__ import annotations

import os
from urllib.parse import quote

import requests

from carbonsched.errors import CarbonschedError, ConfigError, UserInputError
from carbonsched.run.store import UnknownJobError


class RemoteError(CarbonschedError):
    """The server failed or could not be reached."""


def remote_from_env(env=None) -> "ApiClient | None":
    """A client when ``CARBONSCHED_SERVER`` is set, else None."""
    env = os.environ if env is None else env
    base = (env.get("CARBONSCHED_SERVER") or "").strip()
    if not base:
        return None
    if not base.startswith(("http://", "https://")):
        raise ConfigError(f"CARBONSCHED_SERVER must be an http(s):// URL, got {base!r}")
    token = (env.get("CARBONSCHED_TOKEN") or "").strip()
    if not token:
        raise ConfigError("CARBONSCHED_SERVER is set but CARBONSCHED_TOKEN is not; ask your admin for a token "
                          "(`carbonsched token create`) or unset CARBONSCHED_SERVER to use the local store")
    return ApiClient(base, token)


class ApiClient:
    def __init__(self, base_url: str, token: str, timeout_s: float = 120.0, session: requests.Session | None = None):
        self.base = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = session or requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def _call(self, method: str, path: str, *, json=None, params=None, text: bool = False):
        url = self.base + path
        try:
            r = self.session.request(method, url, json=json, params=params, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise RemoteError(f"cannot reach carbonsched server {self.base} ({type(exc).__name__}); check "
                              "CARBONSCHED_SERVER and that the server runs") from None
        if r.status_code < 300:
            return r.text if text else r.json()
        try:
            message = r.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = r.text[:300] or r.reason
        if r.status_code in (401, 403):
            raise ConfigError(f"server {self.base} refused the request ({r.status_code}): {message}")
        if r.status_code == 404:
            raise UnknownJobError(message)
        if r.status_code < 500:
            raise UserInputError(message)
        raise RemoteError(f"server {self.base} failed ({r.status_code}): {message}")

    def plan(self, job: dict, *, now: str | None = None, top: int | None = None,
             intensity_source: str | None = None) -> dict:
        body = {"job": job, **({"now": now} if now else {}), **({"top": top} if top is not None else {}),
                **({"intensity_source": intensity_source} if intensity_source else {})}
        return self._call("POST", "/v1/plan", json=body)

    def plan_batch(self, batch: dict, *, now: str | None = None, objective: str | None = None, strict: bool = False,
                   top_k: int | None = None, time_limit_s: float | None = None,
                   intensity_source: str | None = None) -> dict:
        """``POST /v1/plan/batch``: ``batch`` is a batch file's table (``job``: job tables, ``capacity``)."""
        body = {"job": batch["job"], **({"capacity": batch["capacity"]} if batch.get("capacity") else {}),
                **{k: v for k, v in (("now", now), ("objective", objective), ("top_k", top_k),
                                     ("time_limit_s", time_limit_s), ("intensity_source", intensity_source))
                   if v is not None},
                **({"strict": True} if strict else {})}
        return self._call("POST", "/v1/plan/batch", json=body)

    def submit(self, job: dict, *, launcher: str, max_attempts: int, now: str | None = None) -> dict:
        body = {"job": job, "launcher": launcher, "max_attempts": max_attempts, **({"now": now} if now else {})}
        return self._call("POST", "/v1/jobs", json=body)

    def jobs(self, states: tuple[str, ...] | None = None, page: int = 500) -> list[dict]:
        """Every job of the token's team (all pages)."""
        out, cursor = [], None
        while True:
            params = {"limit": page, **({"state": ",".join(states)} if states else {}),
                      **({"cursor": cursor} if cursor else {})}
            doc = self._call("GET", "/v1/jobs", params=params)
            out += doc["jobs"]
            cursor = doc.get("next_cursor")
            if not cursor:
                return out

    def job(self, job_id: str) -> dict:
        return self._call("GET", f"/v1/jobs/{quote(job_id, safe='')}")

    def cancel(self, job_id: str) -> dict:
        return self._call("POST", f"/v1/jobs/{quote(job_id, safe='')}/cancel")

    def logs(self, job_id: str) -> str:
        return self._call("GET", f"/v1/jobs/{quote(job_id, safe='')}/logs", text=True)

    def ledger(self, since: str | None = None) -> dict:
        return self._call("GET", "/v1/ledger", params={"since": since} if since else None)

    def report(self, job_id: str) -> dict:
        return self._call("GET", f"/v1/reports/{quote(job_id, safe='')}")
