"""HTTP plumbing shared by the live intensity sources: JSON over requests, retries, error mapping.

``get_json`` is the one network entry point of every ``get_*`` function in this package:

- retries connection errors, timeouts, HTTP 429 and 5xx with exponential backoff
  (``backoff_s * 2**attempt``), honouring a ``Retry-After`` header (seconds or HTTP date),
  capped at ``max_wait_s`` so a hostile or confused server cannot park the planner for hours;
- maps the final failure onto the grid-source errors of :mod:`carbonsched.errors`:
  401/403 -> ``SourceAuthError`` (the message names the variable to set), 404 ->
  ``SourceNotFoundError``, 429 -> ``SourceQuotaError``, 5xx or network -> ``SourceUnavailableError``,
  a body that is not JSON -> ``SourcePayloadError``; other 4xx -> ``GridSourceError``;
- never puts credentials in messages: only scheme, host and path of the URL are shown, and any
  header value or basic-auth password that was sent is scrubbed from quoted server text.

Every raised error carries ``status`` (the HTTP status, or None for network failures).
``sleep`` is injectable so tests run without waiting. Timestamp helpers for payloads live here too.
"""
from __future__ import annotations

import email.utils
import json as jsonlib
import time
from datetime import datetime, timezone
from typing import Callable
from urllib.parse import urlsplit

import requests

from carbonsched.errors import (
    GridSourceError,
    SourceAuthError,
    SourceNotFoundError,
    SourcePayloadError,
    SourceQuotaError,
    SourceUnavailableError,
)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 60.0
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


def get_json(session: requests.Session | None, method: str, url: str, *, headers: dict | None = None,
             params: dict | None = None, json=None, auth=None, timeout_s: float = 10, retries: int = 3,
             backoff_s: float = 0.5, source: str = "", sleep: Callable[[float], None] = time.sleep,
             auth_hint: str = "", max_wait_s: float = MAX_RETRY_AFTER_S) -> dict | list:
    """Send one request (plus up to ``retries`` retries) and return the decoded JSON body.

    ``retries`` counts retries after the first attempt, so a persistently failing server is
    asked ``retries + 1`` times. ``auth_hint`` completes the message of ``SourceAuthError``
    (e.g. "set ELECTRICITYMAPS_TOKEN to a valid API token").
    """
    session = session or requests.Session()
    where = _where(url)
    secrets = _secrets(headers, auth)
    attempts = 0
    while True:
        attempts += 1
        last = attempts > retries
        try:
            response = session.request(method, url, headers=headers, params=params, json=json, auth=auth,
                                       timeout=timeout_s)
        except (requests.ConnectionError, requests.Timeout) as exc:
            if last:
                raise _error(SourceUnavailableError, f"{source or 'intensity source'}: cannot reach {where} "
                             f"({type(exc).__name__}) after {attempts} tries; check the network or try later",
                             source, None) from None
            sleep(min(max_wait_s, backoff_s * 2 ** (attempts - 1)))
            continue
        status = response.status_code
        if status in RETRY_STATUSES and not last:
            wait = parse_retry_after(response.headers.get("Retry-After"))
            if wait is None:
                wait = backoff_s * 2 ** (attempts - 1)
            sleep(min(max_wait_s, wait))
            continue
        if not 200 <= status < 300:
            raise error_for_response(response, source=source, where=where, attempts=attempts,
                                     auth_hint=auth_hint, secrets=secrets)
        try:
            return response.json()
        except ValueError:
            snippet = " ".join((response.text or "")[:80].split())
            raise _error(SourcePayloadError, f"{source or 'intensity source'}: {where} answered HTTP {status} "
                         f"with a body that is not JSON ({snippet!r}); the API may have changed or a proxy "
                         "intercepted the request", source, status) from None


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

    from carbonsched.models import Forecast

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
