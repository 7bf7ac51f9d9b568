"""Stitching intensity sources into one hourly forecast, with fallbacks and provenance.

For a region and window ``[start, start + hours)`` the hours are filled in this order:

1. the live source's forecast (fresh cache within ``ttl_hours`` first, so quota is spared);
   when the live call fails, the cached forecast of any age (flagged stale);
2. beyond the live horizon (or when there is none), the statistical forecaster fitted on the
   cached/fetched history of the zone (needs >= 14 days ending at most ``history_gap_hours``
   before the hours it forecasts);
3. whatever is still missing, the embedded typical-day profile. When the profile's signal
   (average-lca) differs from the head's (e.g. direct or marginal), the profile is scaled to the
   head's level over the hours both cover, and the note says so.

Every part is recorded in ``Forecast.segments`` (source, kind, signal, from, to) and every
fallback in ``Forecast.warnings`` (corrupt cache files the cache ignored included), so the plan
can say what it used.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable, Protocol

import numpy as np

from carbonsched.errors import GridSourceError, SourceAuthError, SourceQuotaError, SourceUnavailableError
from carbonsched.models import Forecast, Region
from carbonsched.units import iso_utc

from carbonsched.providers.grid.cache import SeriesCache
from carbonsched.providers.grid.profile import ProfileSource
from carbonsched.providers.grid.series import HourlySeries

MIN_HISTORY_HOURS = 14 * 24
HISTORY_FETCH_HOURS = 28 * 24


class LiveSource(Protocol):
    """A live source: ``series`` returns its forecast for the window (NaN beyond its horizon);
    ``history`` (optional) returns observed values for ``[end - hours, end)``."""

    name: str
    signal: str

    def series(self, region: Region, start: datetime, hours: int) -> HourlySeries: ...


def _segments(mask: np.ndarray, start: datetime, source: str, kind: str, signal: str) -> list[dict]:
    """Contiguous True runs of ``mask`` as provenance segments."""
    out, i, n = [], 0, len(mask)
    while i < n:
        if mask[i]:
            j = i
            while j < n and mask[j]:
                j += 1
            out.append({"source": source, "kind": kind, "signal": signal,
                        "from": iso_utc(start + timedelta(hours=i)), "to": iso_utc(start + timedelta(hours=j))})
            i = j
        else:
            i += 1
    return out


class ChainedSource:
    """Live source (optional) -> cache -> forecaster on history -> embedded profile."""

    def __init__(self, live: LiveSource | None = None, cache: SeriesCache | None = None, *,
                 clock: Callable[[], datetime], ttl_hours: float = 1.0, history_gap_hours: float = 72.0,
                 profile: ProfileSource | None = None):
        self.live = live
        self.cache = cache
        self.clock = clock
        self.ttl = timedelta(hours=ttl_hours)
        self.history_gap = timedelta(hours=history_gap_hours)
        self.profile = profile or ProfileSource()
        self.name = f"{live.name}+fallbacks" if live else "profile"
        self.down: str | None = None  # set when the live source failed to answer: later regions skip it

    # -- the live head ---------------------------------------------------------------
    def _head(self, region: Region, start: datetime, hours: int, warnings: list[str]) -> HourlySeries | None:
        live, cache = self.live, self.cache
        if live is None:
            return None
        cached = cache.get(live.name, region.grid_zone, live.signal, "forecast", warnings) if cache else None
        now = self.clock()
        if cached is not None and cached.fetched_at and now - cached.fetched_at <= self.ttl \
                and np.isfinite(cached.window(start, hours)).any():
            return cached
        if self.down is not None:  # it already failed in this plan: do not make every region wait for it
            return self._without_live(cached, now, region, "skipped (it failed earlier in this plan)", self.down,
                                      warnings)
        try:
            fresh = live.series(region, start, hours)
        except GridSourceError as exc:
            if isinstance(exc, (SourceUnavailableError, SourceQuotaError, SourceAuthError)):
                self.down = str(exc)  # the service, not this region, is the problem
            return self._without_live(cached, now, region, "failed", str(exc), warnings)
        if cache is not None:
            self._keep(cache, fresh, region, warnings)
        return fresh

    def _without_live(self, cached: HourlySeries | None, now: datetime, region: Region, what: str, why: str,
                      warnings: list[str]) -> HourlySeries | None:
        """The cached forecast (or None) when the live source did not answer, and a warning saying so."""
        name = self.live.name
        if cached is None:
            warnings.append(f"{name} {what} for {region.region_id} ({why}); no cached forecast")
            return None
        age = (now - cached.fetched_at) / timedelta(hours=1) if cached.fetched_at else float("nan")
        warnings.append(f"{name} {what} for {region.region_id} ({why}); using its cached forecast fetched {age:.0f} h ago")
        return cached

    def _history(self, region: Region, end: datetime, signal: str, warnings: list[str]) -> HourlySeries | None:
        live, cache = self.live, self.cache
        fetched, failed = None, None
        if live is not None and hasattr(live, "history") and self.down is None:
            try:
                fetched = live.history(region, end, HISTORY_FETCH_HOURS)
            except GridSourceError as exc:
                failed = f"{live.name} history failed for {region.region_id} ({exc})"
        if fetched is not None and cache is not None:
            return self._keep(cache, fetched, region, warnings)
        cached = cache.get(live.name, region.grid_zone, signal, "history", warnings) \
            if cache is not None and live is not None else None
        if failed:  # say what stands in for it: the cache only when there is one
            warnings.append(failed + ("; using cached history" if cached is not None else "; no cached history"))
        return cached if cached is not None else fetched

    @staticmethod
    def _keep(cache: SeriesCache, series: HourlySeries, region: Region, warnings: list[str]) -> HourlySeries:
        """Cache ``series``; a cache that cannot be written (read-only home, full disk) costs the
        next plan a fetch, never this plan its live data."""
        try:
            return cache.put(series, warnings)
        except OSError as exc:
            warnings.append(f"{region.region_id}: cannot write the forecast cache {cache.root} ({exc.strerror or exc}); "
                            "using the fetched data without caching it")
            return series

    # -- the forecast ------------------------------------------------------------------
    def forecast(self, region: Region, start: datetime, hours: int) -> Forecast:
        warnings: list[str] = []
        values = np.full(hours, np.nan)
        p10 = np.full(hours, np.nan)
        p90 = np.full(hours, np.nan)
        segments: list[dict] = []
        head = self._head(region, start, hours, warnings)
        signal = head.signal if head is not None else self.profile.signal
        fetched_at = head.fetched_at if head is not None else None
        if head is not None:
            warnings.extend(w for w in head.warnings if w not in warnings)
            part = head.window(start, hours)
            have = np.isfinite(part)
            values[have] = p10[have] = p90[have] = part[have]  # live forecasts carry no spread
            segments += _segments(have, start, head.source, head.kind, head.signal)

        missing = ~np.isfinite(values)
        if missing.any() and self.live is not None:
            self._fill_from_history(region, start, hours, signal, values, p10, p90, segments, warnings)

        missing = ~np.isfinite(values)
        scale_note = ""
        if missing.any():
            prof = self.profile.forecast(region, start, hours)
            scale = 1.0
            overlap = np.isfinite(values)
            if prof.signal != signal and overlap.sum() >= 6:
                scale = float(np.nanmean(values[overlap]) / np.mean(prof.intensity_g_per_kwh[overlap]))
                scale_note = f" (profile scaled x{scale:.2f} to the {signal} level of the hours before)"
            for out, series in ((values, prof.intensity_g_per_kwh), (p10, prof.p10_g_per_kwh), (p90, prof.p90_g_per_kwh)):
                series = prof.intensity_g_per_kwh if series is None else series
                out[missing] = series[missing] * scale
            segments += _segments(missing, start, prof.source, prof.kind, prof.signal)
            if self.live is not None:
                warnings.append(f"{region.region_id}: {int(missing.sum())} of {hours} h from the embedded "
                                f"{prof.kind} ({prof.signal}){scale_note}")

        segments.sort(key=lambda s: s["from"])
        sources = list(dict.fromkeys(s["source"] for s in segments))
        kinds = list(dict.fromkeys(s["kind"] for s in segments))
        return Forecast(
            region_id=region.region_id, zone=region.grid_zone if head is not None else (region.profile_zone or region.grid_zone),
            start=start, intensity_g_per_kwh=values, p10_g_per_kwh=p10, p90_g_per_kwh=p90,
            source="+".join(sources), kind=kinds[0] if len(kinds) == 1 else "+".join(kinds), signal=signal,
            fetched_at=fetched_at, note="; ".join(f"{s['source']} {s['from']}..{s['to']}" for s in segments) + scale_note,
            segments=tuple(segments), warnings=tuple(warnings),
        )

    def _fill_from_history(self, region, start, hours, signal, values, p10, p90, segments, warnings) -> None:
        missing = ~np.isfinite(values)
        first_gap = start + timedelta(hours=int(np.argmax(missing)))
        hist = self._history(region, first_gap, signal, warnings)
        if hist is None:
            return
        warnings.extend(w for w in hist.warnings if w not in warnings)
        # forecast from the end of the valid history up to the end of the window
        valid = np.flatnonzero(np.isfinite(hist.values_g_per_kwh))
        if valid.size < MIN_HISTORY_HOURS:
            warnings.append(f"{region.region_id}: only {valid.size} h of recent history available; the forecaster "
                            f"needs {MIN_HISTORY_HOURS} h")
            return
        hist_end = hist.start + timedelta(hours=int(valid[-1]) + 1)
        if first_gap - hist_end > self.history_gap:
            warnings.append(f"{region.region_id}: cached history ends {iso_utc(hist_end)}, too long before "
                            f"{iso_utc(first_gap)} to forecast from")
            return
        arr = hist.values_g_per_kwh[: int(valid[-1]) + 1]
        horizon = int((start + timedelta(hours=hours) - hist_end) / timedelta(hours=1))
        if horizon <= 0:
            return
        from carbonsched.providers.grid.forecaster import forecast_series  # only when a live source falls short

        fc = forecast_series(arr, hist.start, horizon)
        offset = int((start - hist_end) / timedelta(hours=1))  # forecast index of window hour 0
        idx = np.arange(hours) + offset
        ok = missing & (idx >= 0) & (idx < horizon)
        values[ok], p10[ok], p90[ok] = fc.mean[idx[ok]], fc.p10[idx[ok]], fc.p90[idx[ok]]
        segments += _segments(ok, start, "forecaster", "forecast", hist.signal)
        if ok.any():
            warnings.append(f"{region.region_id}: {int(ok.sum())} h beyond the live horizon from the statistical "
                            f"forecaster (history to {iso_utc(hist_end)})")
