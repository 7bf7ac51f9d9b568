"""Prometheus metrics for ``/metrics`` (text exposition format, ``prometheus_client``).

Counted by the server: ``carbonsched_http_requests_total{method,route,status}`` and
``carbonsched_plan_seconds{kind}`` (single or batch, a histogram). Read from the store at each
scrape, so several server replicas report the same truth: ``carbonsched_jobs{state}`` and
``carbonsched_launch_attempts_total{outcome}`` (launched, reconciled, capacity -- a failover to the
next placement --, error, pending).
"""
from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from carbonsched.run.store import STATES

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class StoreCollector:
    """Jobs by state and launch attempts by outcome, read from the store when scraped."""

    def __init__(self, open_store: Callable):
        self.open_store = open_store

    def collect(self):
        store = self.open_store()
        jobs = GaugeMetricFamily("carbonsched_jobs", "Jobs in the store by state", labels=["state"])
        counts = store.count_by_state()
        for state in STATES:
            jobs.add_metric([state], counts.get(state, 0))
        yield jobs
        attempts = CounterMetricFamily("carbonsched_launch_attempts", "Launch attempts by outcome (capacity = failover)",
                                       labels=["outcome"])
        for row in store.backend.read("SELECT outcome, COUNT(*) AS n FROM attempts GROUP BY outcome"):
            attempts.add_metric([row["outcome"]], int(row["n"]))
        yield attempts


class Metrics:
    def __init__(self, open_store: Callable):
        self.registry = CollectorRegistry()
        self.requests = Counter("carbonsched_http_requests", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.plan_seconds = Histogram("carbonsched_plan_seconds", "Time to plan, per request", ["kind"],
                                      buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
                                      registry=self.registry)
        self.registry.register(StoreCollector(open_store))

    def render(self) -> bytes:
        return generate_latest(self.registry)
