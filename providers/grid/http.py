"""HTTP plumbing shared by the live intensity sources: JSON over requests, retries, error mapping.

``get_json`` is the one network entry point of every ``get_*`` function in this package:

- retries connection errors, timeouts, HTTP 429 and 5xx through urllib3's ``Retry`` (mounted on
  the session's adapter): exponential backoff ``backoff_s * 2**(n-1)`` before retry n plus up to
  ``jitter_s`` of random jitter (so many clients do not retry in step), or the server's
  ``Retry-After`` (seconds or HTTP date, on 429/503), capped at ``max_wait_s`` so a hostile or
  confused server cannot park the planner for hours;
- maps the final failure onto the grid-source errors of :mod:`carbonsched.errors`:
  401/403 -> ``SourceAuthError`` (the message names the variable to set), 404 ->
  ``SourceNotFoundError``, 429 -> ``SourceQuotaError``, 5xx or network -> ``SourceUnavailableError``,
  a body that is not JSON -> ``SourcePayloadError``; other 4xx -> ``GridSourceError``;
- never puts credentials in messages: only scheme, host and path of the URL are shown, and any
  header value or basic-auth password that was sent is scrubbed from quoted server text.

Every call has a total deadline (``deadline_s``, default 8 s): connect, every retry and its wait,
and reading the body all fit in it, so a server that stalls, trickles bytes or keeps answering
429 costs a plan seconds, not minutes; the caller then falls back (``chain.py``) and says so.
Bodies over ``MAX_BODY_BYTES`` are refused. Every raised error carries ``status`` (the HTTP
status, or None for network failures).
``sleep`` is injectable so tests run without waiting. Timestamp helpers for payloads live here too.
"""
from __future__ import annotations

import base64
import email.utils
import json as jsonlib
import random
import time
from datetime import datetime, timezone
from typing import Callable
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.util.retry import Retry

from carbonsched.errors import (
    GridSourceError,
    SourceAuthError,
    SourceNotFoundError,
    SourcePayloadError,
    SourceQuotaError,
    SourceUnavailableError,
)
from carbonsched.models import Forecast

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 60.0
DEFAULT_DEADLINE_S = 8.0
MAX_BODY_BYTES = 32 * 1024 * 1024


class _OutOfTime(Exception):
    """A retry wait would end past the call's deadline."""
_QUOTE_CHARS = 300  # how much of a server's error text goes into our message


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date); None if unreadable."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _secrets(headers: dict | None, auth) -> list[str]:
    found = [str(v) for v in (headers or {}).values() if v and len(str(v)) >= 4]
    if isinstance(auth, tuple) and len(auth) == 2 and auth[1]:
        found.append(str(auth[1]))
        # the Authorization header requests builds from it: servers echo it back in error bodies
        found.append(base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    # "Bearer abc" -> also scrub "abc" on its own
    found += [v.split(" ", 1)[1] for v in list(found) if " " in v and len(v.split(" ", 1)[1]) >= 4]
    return found


def _server_text(response: requests.Response, secrets: list[str]) -> str:
    """A short, credential-free rendering of the server's error body (its message field if JSON)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    text = ""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):  # UK Carbon Intensity: {"error": {"code": ..., "message": ...}}
            text = str(err.get("message") or err.get("code") or "")
        parts = [str(body[k]) for k in ("error", "message", "detail") if isinstance(body.get(k), str)]
        text = text or ": ".join(parts)
    if not text:
        text = (response.text or "").strip()
    for secret in secrets:
        text = text.replace(secret, "***")
    text = " ".join(text.split())
    return text[:_QUOTE_CHARS]


def _error(cls, message: str, source: str, status: int | None) -> GridSourceError:
    err = cls(message, source=source)
    err.status = status
    return err


def error_for_response(response: requests.Response, *, source: str, where: str, attempts: int,
                       auth_hint: str, secrets: list[str]) -> GridSourceError:
    """Map a final non-2xx response to the specific grid-source error, with what to do next."""
    status = response.status_code
    said = _server_text(response, secrets)
    said = f" (server said: {said})" if said else ""
    name = source or "intensity source"
    if status in (401, 403):
        hint = auth_hint or "check the source's credentials"
        return _error(SourceAuthError, f"{name}: credentials rejected, HTTP {status} from {where}{said}; {hint}",
                      source, status)
    if status == 404:
        return _error(SourceNotFoundError, f"{name}: not found, HTTP 404 from {where}{said}; check the zone/region "
                      "name and that your plan covers it", source, status)
    if status == 429:
        return _error(SourceQuotaError, f"{name}: rate limit or quota exhausted (HTTP 429 after {attempts} tries) "
                      f"at {where}{said}; wait and retry later, or upgrade the plan", source, status)
    if status >= 500:
        return _error(SourceUnavailableError, f"{name}: server error HTTP {status} after {attempts} tries at "
                      f"{where}{said}; try again later (the planner falls back to cached or embedded data)",
                      source, status)
    return _error(GridSourceError, f"{name}: request rejected, HTTP {status} from {where}{said}; check the "
                  "zone/region and time range", source, status)


class _Retry(Retry):
    """urllib3's ``Retry`` with this module's schedule: ``backoff_s * 2**(n-1)`` before retry n
    (urllib3 waits nothing before the first) plus jitter, ``Retry-After`` capped at ``max_wait_s``,
    and every wait through ``sleep_fn`` (injectable, so tests do not wait)."""

    def __init__(self, *args, sleep_fn: Callable[[float], None] = time.sleep, max_wait_s: float = MAX_RETRY_AFTER_S,
                 first_backoff_s: float = 0.5, **kw):
        super().__init__(*args, **kw)
        self.sleep_fn, self.max_wait_s, self.first_backoff_s = sleep_fn, max_wait_s, first_backoff_s

    def new(self, **kw) -> "_Retry":
        out = super().new(**kw)
        out.sleep_fn, out.max_wait_s, out.first_backoff_s = self.sleep_fn, self.max_wait_s, self.first_backoff_s
        return out

    def get_backoff_time(self) -> float:
        n = len(self.history)
        if n == 0:
            return 0.0
        wait = self.first_backoff_s * 2 ** (n - 1) + (random.random() * self.backoff_jitter if self.backoff_jitter else 0.0)
        return min(self.max_wait_s, wait)

    def get_retry_after(self, response) -> float | None:
        wait = parse_retry_after(response.headers.get("Retry-After"))
        return None if wait is None else min(self.max_wait_s, wait)

    def sleep_for_retry(self, response) -> bool:
        wait = self.get_retry_after(response)
        if wait is None:
            return False
        self.sleep_fn(wait)
        return True

    def _sleep_backoff(self) -> None:
        wait = self.get_backoff_time()
        if wait > 0:
            self.sleep_fn(wait)


def _bounded_sleep(sleep: Callable[[float], None], deadline: float) -> Callable[[float], None]:
    def wait(seconds: float) -> None:
        if time.monotonic() + seconds >= deadline:
            raise _OutOfTime(seconds)
        sleep(seconds)
    return wait


def retrying_session(session: requests.Session | None, *, retries: int, backoff_s: float, jitter_s: float,
                     max_wait_s: float, sleep: Callable[[float], None]) -> requests.Session:
    """``session`` (or a new one) whose http(s) adapters retry as described in the module docstring;
    the final response of a retried status is returned, not raised, so it can be mapped to an error."""
    session = session or requests.Session()
    retry = _Retry(total=retries, connect=retries, read=retries, status=retries, other=0, redirect=5,
                   status_forcelist=RETRY_STATUSES, allowed_methods=None, raise_on_status=False,
                   respect_retry_after_header=True, backoff_jitter=jitter_s,
                   sleep_fn=sleep, max_wait_s=max_wait_s, first_backoff_s=backoff_s)
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def get_json(session: requests.Session | None, method: str, url: str, *, headers: dict | None = None,
             params: dict | None = None, json=None, auth=None, timeout_s: float = 10, retries: int = 3,
             backoff_s: float = 0.5, jitter_s: float = 0.25, source: str = "", sleep: Callable[[float], None] = time.sleep,
             auth_hint: str = "", max_wait_s: float = MAX_RETRY_AFTER_S,
             deadline_s: float = DEFAULT_DEADLINE_S) -> dict | list:
    """Send one request (plus up to ``retries`` retries, all within ``deadline_s``) and return the
    decoded JSON body.

    ``retries`` counts retries after the first attempt, so a persistently failing server is
    asked ``retries + 1`` times. ``auth_hint`` completes the message of ``SourceAuthError``
    (e.g. "set ELECTRICITYMAPS_TOKEN to a valid API token").
    """
    deadline = time.monotonic() + deadline_s
    session = retrying_session(session, retries=retries, backoff_s=backoff_s, jitter_s=jitter_s,
                               max_wait_s=max_wait_s, sleep=_bounded_sleep(sleep, deadline))
    where = _where(url)
    secrets = _secrets(headers, auth)
    name = source or "intensity source"
    try:
        wait = max(0.1, min(timeout_s, deadline_s))
        response = session.request(method, url, headers=headers, params=params, json=json, auth=auth,
                                    timeout=wait, stream=True)
        body = _read_body(response, deadline, where, name, source)
    except _OutOfTime:
        raise _error(SourceUnavailableError, f"{name}: no answer from {where} within {deadline_s:g} s (its retries and "
                     "waits would take longer); the planner falls back to cached or embedded data", source, None) from None
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
            Urllib3Error, OSError) as exc:  # incl. resets, stalls and short bodies while reading the body
        raise _error(SourceUnavailableError, f"{name}: cannot reach {where} "
                     f"({type(exc).__name__}) after {retries + 1} tries; check the network or try later",
                     source, None) from None
    status = response.status_code
    if not 200 <= status < 300:
        done = getattr(getattr(response.raw, "retries", None), "history", ())
        raise error_for_response(response, source=source, where=where, attempts=len(done) + 1,
                                 auth_hint=auth_hint, secrets=secrets)
    try:
        return jsonlib.loads(body)
    except ValueError:
        snippet = " ".join(body[:80].decode("utf-8", "replace").split())
        raise _error(SourcePayloadError, f"{name}: {where} answered HTTP {status} "
                     f"with a body that is not JSON ({snippet!r}); the API may have changed or a proxy "
                     "intercepted the request", source, status) from None


def _read_body(response: requests.Response, deadline: float, where: str, name: str, source: str) -> bytes:
    """The whole body, read within the deadline and ``MAX_BODY_BYTES`` (a trickling or endless body
    is cut off); for error statuses the body stays readable by the error mapping."""
    chunks, size = [], 0
    while True:
        chunk = response.raw.read1(65536, decode_content=True)  # what has arrived, not a full block
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            response.close()
            raise _error(SourcePayloadError, f"{name}: {where} sent more than {MAX_BODY_BYTES // 2**20} MiB; "
                         "refusing it", source, response.status_code)
        if time.monotonic() > deadline:
            response.close()
            raise _OutOfTime(0)
    body = b"".join(chunks)
    response._content = body  # so .json()/.text work for the error mapping
    return body


def load_payload(payload_or_path, source: str = "") -> dict | list:
    """``read_*`` helper: a decoded payload is returned as is; a path is read as a JSON file."""
    if isinstance(payload_or_path, (dict, list)):
        return payload_or_path
    try:
        with open(payload_or_path, encoding="utf-8") as fh:
            return jsonlib.load(fh)
    except ValueError as exc:
        raise SourcePayloadError(f"{source}: {payload_or_path} is not valid JSON ({exc})", source=source) from None
    except OSError as exc:
        raise SourcePayloadError(f"{source}: cannot read {payload_or_path} ({exc.strerror})", source=source) from None


def parse_utc_timestamp(value, source: str = "", what: str = "timestamp") -> datetime:
    """An API timestamp (``...Z`` or with an offset, optional fraction) -> aware UTC datetime.

    A timestamp without an offset is a payload error: these APIs document UTC times, and guessing
    would silently shift a series by the local offset.
    """
    if not isinstance(value, str):
        raise SourcePayloadError(f"{source}: {what} is {value!r}, not an ISO 8601 string", source=source)
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise SourcePayloadError(f"{source}: cannot read {what} {value!r} as ISO 8601", source=source) from None
    if dt.tzinfo is None:
        raise SourcePayloadError(f"{source}: {what} {value!r} has no UTC offset", source=source)
    return dt.astimezone(timezone.utc)


def number(value, source: str = "", what: str = "value") -> float:
    """A numeric payload field -> float (None -> NaN, a missing value); anything else is an error."""
    if value is None:
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SourcePayloadError(f"{source}: {what} is {value!r}, not a number", source=source)
    return float(value)


# --- shared by the source classes: HourlySeries window -> the planner's Forecast ------------------

def utc_hour(start: datetime) -> datetime:
    """``start`` as an aware UTC datetime on its hour (naive times are refused: "now" is explicit UTC)."""
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError("start must be timezone-aware (UTC)")
    return start.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def covered_forecast(region, series, start: datetime, hours: int):
    """The leading run of hours from ``start`` that ``series`` covers, as a ``Forecast``.

    ``Forecast.zone`` is the region's grid zone (see ``region_window`` for the source's own zone).

    A live forecast often reaches less far than the job's window (24-72 h); the result then holds
    fewer than ``hours`` values and its note says so, and the caller continues the series with
    another source (``series()`` on the source classes gives the NaN-padded window instead).
    Raises ``SourceNotFoundError`` when the series has no value for the hour ``start``.
    """
    import numpy as np


    zone = region.grid_zone
    values = series.window(start, hours)
    finite = np.isfinite(values)
    n = int(np.argmin(finite)) if not finite.all() else hours
    if n == 0:
        raise _error(SourceNotFoundError, f"{series.source}: no {series.kind} value for {zone} at "
                     f"{start:%Y-%m-%dT%H:%MZ} (the series covers {series.start:%Y-%m-%dT%H:%MZ} to "
                     f"{series.end:%Y-%m-%dT%H:%MZ}); use another source for this window",
                     series.source, None)
    note = series.note
    if series.zone != zone:
        note = "; ".join(x for x in (f"source zone {series.zone}", note) if x)
    if n < hours:
        note = "; ".join(x for x in (note, f"covers {n} of the {hours} requested hours") if x)
    return Forecast(region_id=region.region_id, zone=zone, start=start, intensity_g_per_kwh=values[:n].copy(),
                    p10_g_per_kwh=None, p90_g_per_kwh=None, source=series.source, kind=series.kind,
                    signal=series.signal, fetched_at=series.fetched_at, note=note)


def region_window(series, region, start: datetime, hours: int):
    """``series`` cut to ``[start, start + hours)`` and labelled with the region's grid zone.

    Caches and the planner key series by ``Region.grid_zone``; the source's own zone/region id
    (WattTime ``CAISO_NORTH``, UK CI ``GB-ukci-13``) stays visible in the note.
    """
    from dataclasses import replace

    note = series.note
    if series.zone != region.grid_zone:
        note = "; ".join(x for x in (f"source zone {series.zone}", note) if x)
    return replace(series, zone=region.grid_zone, start=start, values_g_per_kwh=series.window(start, hours),
                   note=note)
