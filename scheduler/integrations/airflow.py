"""Airflow 3 operators (``pip install 'carbonsched[airflow]'``): wait for the green window and submit
jobs without holding a worker slot while they wait.

``WaitForGreenWindowOperator`` plans the job (under a policy from a file, an Airflow Variable or an
Airflow connection), then *defers*: the task leaves its worker slot and a ``GreenWindowTrigger`` in
the triggerer sleeps until shortly before the chosen start (``replan_lead``, default 1 h). There the
task resumes for a moment, re-plans once (a newer forecast may move the window; the window stays
pinned at the first plan, so it never drifts later), defers again until the (possibly moved)
start, and returns the placement, which Airflow pushes to XCom (``return_value``)::

    {"region_id": "aws:eu-north-1", "instance_type": "p4d.24xlarge", "start": "2026-11-28T02:00:00Z",
     "kg_co2e": 3.1, "saving_vs_baseline_pct": 71.0, "deferred": true, "replanned": true, "moved_from": null, ...}

``CarbonschedSubmitOperator`` submits the job (``carbonsched submit --yes``: plan under the policy,
store, launch now or leave it scheduled) and, with ``wait=True``, defers to a ``JobStateTrigger``
that polls the job store (``refresh_status``, as ``carbonsched status`` does) until the job ends;
a job scheduled for later is launched when due (``launch_when_due``; the claim is atomic, so an
agent on the same store never launches it twice). Its XCom is the job (id, state, exit code,
region); a job that ends failed or cancelled fails the task. With ``pin_to="wait_task_id"`` it
submits to the region and GPU the wait task chose.

Clock: ``now`` (ISO 8601 UTC, templated) fixes the clock at the task's first run, like the CLI's
``--now``, and ``skip_waits`` makes the triggers' waits take no time: the clock jumps to the moment
waited for (``placement.Clock``). A test (or ``airflow dags test`` of a pipeline) runs a deferral to
a window hours ahead at once, and the re-plan and the launch see the time of the window. A submit
task pinned to a wait task starts a fixed ``now`` at the window's start. The clock travels with the deferral (trigger kwargs and ``next_kwargs``), so the triggerer and the
resumed task read the same time.

The triggers are plain ``BaseTrigger`` subclasses serialised by class path
(``carbonsched.integrations.airflow.GreenWindowTrigger``): the triggerer needs carbonsched installed.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import BaseOperator, Connection, Variable
from airflow.triggers.base import BaseTrigger, TriggerEvent

from carbonsched.errors import LaunchError, UserInputError
from carbonsched.integrations.placement import (Clock, job_summary, launch_if_due, launchers_for, pinned_to,
                                                placement_summary, plan_under_policy, poll_job, read_job,
                                                read_policy, same_placement, settings_for, submit_under_policy)
from carbonsched.run.store import Store
from carbonsched.run.submit import START_TOLERANCE
from carbonsched.units import iso_utc, parse_utc

MAX_STEP_S = 3600.0  # a trigger re-reads its clock at least this often (a clock change is noticed)


class GreenWindowTrigger(BaseTrigger):
    """Fires once, when the clock (``placement.Clock`` as a dict) reads ``moment`` (ISO 8601 UTC).
    The event's payload: ``{**carry, "clock": the clock then, "phase", "moment", "fired_at"}``:
    what the resumed task needs travels in the event (``dag.test()`` passes the task only the event)."""

    def __init__(self, moment: str, phase: str = "start", clock: dict | None = None, carry: dict | None = None,
                 max_step_s: float = MAX_STEP_S):
        super().__init__()
        self.moment, self.phase, self.clock, self.carry = moment, phase, clock, dict(carry or {})
        self.max_step_s = float(max_step_s)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{__name__}.GreenWindowTrigger", {"moment": self.moment, "phase": self.phase, "clock": self.clock,
                                                   "carry": self.carry, "max_step_s": self.max_step_s})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        clock, moment = Clock.from_dict(self.clock), parse_utc(self.moment, "moment")
        while (left := clock.real_seconds_until(moment)) > 0:
            self.log.info("carbonsched: %.0f s until %s (%s)", left, self.moment, self.phase)
            await asyncio.sleep(min(left, self.max_step_s))
        clock = clock.advanced_to(moment)
        yield TriggerEvent({**self.carry, "clock": clock.to_dict(), "phase": self.phase, "moment": self.moment,
                            "fired_at": iso_utc(clock.now())})


class JobStateTrigger(BaseTrigger):
    """Polls a carbonsched job every ``poll_interval_s`` until it reaches a final state (then the
    payload is ``placement.job_summary`` of it, and ``clock``), or, with ``launch_when_due``, until a scheduled job
    is due (payload ``{"due": true, ...}``: the task resumes to launch it). Store reads and launcher
    status calls run in a thread, so the triggerer's event loop never blocks on them."""

    def __init__(self, job_id: str, settings: dict | None = None, clock: dict | None = None,
                 poll_interval_s: float = 60.0, launch_when_due: bool = True):
        super().__init__()
        self.job_id, self.settings, self.clock = job_id, settings or {}, clock
        self.poll_interval_s, self.launch_when_due = float(poll_interval_s), bool(launch_when_due)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{__name__}.JobStateTrigger",
                {"job_id": self.job_id, "settings": self.settings, "clock": self.clock,
                 "poll_interval_s": self.poll_interval_s, "launch_when_due": self.launch_when_due})

    def _look(self, store: Store, factory, clock: Clock) -> dict:
        return job_summary(poll_job(store, self.job_id, clock.now(), factory))

    async def run(self) -> AsyncIterator[TriggerEvent]:
        clock = Clock.from_dict(self.clock)
        settings = settings_for(self.settings)
        factory = launchers_for(settings)
        store = await asyncio.to_thread(Store.for_settings, settings)
        try:
            while True:
                doc = await asyncio.to_thread(self._look, store, factory, clock)
                if doc["final"]:
                    yield TriggerEvent({**doc, "clock": clock.to_dict()})
                    return
                if doc["state"] == "scheduled":
                    start_at = parse_utc(doc["start_at"], "start_at")
                    wait = clock.real_seconds_until(start_at)
                    if wait <= 0 and self.launch_when_due:
                        clock = clock.advanced_to(start_at)
                        yield TriggerEvent({**doc, "clock": clock.to_dict(), "due": True})
                        return
                    # not due: sleep until the start, or poll for the agent's launch
                    await asyncio.sleep(min(wait, MAX_STEP_S) if wait > 0 else self.poll_interval_s)
                else:
                    await asyncio.sleep(self.poll_interval_s)
        finally:
            await asyncio.to_thread(store.close)


class _PlanningOperator(BaseOperator):
    """What both operators share: the job, the policy and the clock."""

    template_fields = ("job", "policy_file", "policy_variable", "policy_conn_id", "now", "skip_waits")

    def __init__(self, *, job, policy_file: str | None = None, policy_variable: str | None = None,
                 policy_conn_id: str | None = None, now: str | None = None, skip_waits: bool = False,
                 carbonsched_settings: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        if sum(x is not None for x in (policy_file, policy_variable, policy_conn_id)) > 1:
            raise UserInputError("give one of policy_file, policy_variable, policy_conn_id")
        self.job, self.now, self.skip_waits = job, now, skip_waits
        self.policy_file, self.policy_variable, self.policy_conn_id = policy_file, policy_variable, policy_conn_id
        self.carbonsched_settings = dict(carbonsched_settings or {})

    def _settings(self):
        return settings_for(self.carbonsched_settings)

    def _clock(self, not_before: str | None = None) -> Clock:
        """The clock from ``now`` and ``skip_waits`` (rendered templates are strings: "" or "None" is
        no ``now``, "True"/"False" the flag); a fixed ``now`` earlier than ``not_before`` starts there."""
        now = None if self.now in (None, "", "None") else parse_utc(self.now, "now")
        if now is not None and not_before is not None:
            now = max(now, parse_utc(not_before, "start"))
        skip = self.skip_waits
        if isinstance(skip, str):
            if skip.strip().lower() not in ("true", "false", "1", "0", ""):
                raise UserInputError(f"skip_waits must be true or false, got {skip!r}")
            skip = skip.strip().lower() in ("true", "1")
        return Clock.starting(now, bool(skip))

    def _policy(self, settings):
        """From the file, the Variable (policy TOML or JSON text), or the connection's extra (the
        policy table, or TOML text, under ``policy``; else the whole extra is the table); else the
        settings' organisation policy."""
        if self.policy_variable:
            text = Variable.get(self.policy_variable)
            return read_policy(policy=_json_or_text(text))
        if self.policy_conn_id:
            extra = Connection.get(self.policy_conn_id).extra_dejson
            return read_policy(policy=_json_or_text(extra.get("policy", extra)))
        return read_policy(policy_file=self.policy_file, settings=settings)


def _json_or_text(value):
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            pass
    return value


class WaitForGreenWindowOperator(_PlanningOperator):
    """Plan, defer until the green window (re-planning once shortly before it), return the placement.

    ``job``: a job file path or a job table (dict). ``max_wait`` caps the wait (a ``timedelta``;
    default the job's own window). ``replan_lead``: how long before the start the re-plan happens.
    ``top``: placements planned. The policy: ``policy_file``, ``policy_variable`` or ``policy_conn_id``
    (else the ``policy`` setting). See the module docstring for the XCom and the clock.
    """

    ui_color = "#c8e6c9"

    def __init__(self, *, max_wait: timedelta | None = None, replan_lead: timedelta = timedelta(hours=1),
                 top: int = 5, **kwargs):
        super().__init__(**kwargs)
        if replan_lead < timedelta(0):
            raise UserInputError("replan_lead must be >= 0")
        self.max_wait, self.replan_lead, self.top = max_wait, replan_lead, top

    def _plan(self, clock: Clock, first_now: datetime | None = None) -> dict:
        settings = self._settings()
        now = clock.now()
        plan = plan_under_policy(read_job(self.job), self._policy(settings), now=now, settings=settings, top=self.top,
                                 max_wait=self.max_wait, first_now=first_now)
        return placement_summary(plan)

    def execute(self, context):
        clock = self._clock()
        first_now = clock.now()
        placement = self._plan(clock)
        start = parse_utc(placement["start"])
        if start <= clock.now() + START_TOLERANCE:
            return {**placement, "deferred": False, "replanned": False, "moved_from": None}
        wake = max(start - self.replan_lead, clock.now())
        self.log.info("carbonsched: best start %s in %s (%.2f kgCO2e); deferring until %s to re-plan",
                      placement["start"], placement["region_id"], placement["kg_co2e"], iso_utc(wake))
        carry = {"placement": placement, "first_now": iso_utc(first_now), "clock": clock.to_dict(), "moved_from": None}
        self.defer(trigger=GreenWindowTrigger(iso_utc(wake), "replan", clock.to_dict(), carry), method_name="resume")

    def resume(self, context, event: dict | None = None):
        """Called twice after deferring: at ``phase == "replan"`` (re-plan, defer to the start) and
        at ``phase == "start"`` (the window is open: return the placement)."""
        event = event or {}
        placement, first_now, clock, moved_from = (event.get(k) for k in ("placement", "first_now", "clock", "moved_from"))
        if placement is None:
            raise UserInputError("the green-window trigger fired without the placement it waited for")
        ck = Clock.from_dict(clock)
        if event.get("phase") == "replan":
            new = self._plan(ck, first_now=parse_utc(first_now, "first_now"))
            moved = None if same_placement(new, placement) else placement
            if moved:
                self.log.info("carbonsched: the re-plan moved the window: %s %s -> %s %s", placement["region_id"],
                              placement["start"], new["region_id"], new["start"])
            if parse_utc(new["start"]) > ck.now() + START_TOLERANCE:
                carry = {"placement": new, "first_now": first_now, "clock": clock, "moved_from": moved}
                self.defer(trigger=GreenWindowTrigger(new["start"], "start", clock, carry), method_name="resume")
            placement, moved_from = new, moved
        self.log.info("carbonsched: the green window is open: %s on %s from %s", placement["region_id"],
                      placement["instance_type"], placement["start"])
        return {**placement, "deferred": True, "replanned": True, "moved_from": moved_from}


class CarbonschedSubmitOperator(_PlanningOperator):
    """Submit the job (``launcher``: auto, local, aws, gcp, skypilot) and, with ``wait``, wait for its
    final state without holding a worker slot. ``pin_to``: the task id of a
    ``WaitForGreenWindowOperator`` whose placement (region, GPU, market) the job is confined to.
    ``poll_interval_s``: how often the trigger polls the job. Returns (XCom) the job's summary."""

    template_fields = (*_PlanningOperator.template_fields, "launcher")
    ui_color = "#a5d6a7"

    def __init__(self, *, launcher: str = "auto", wait: bool = True, poll_interval_s: float = 60.0,
                 launch_when_due: bool = True, max_attempts: int = 3, pin_to: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.launcher, self.wait, self.poll_interval_s = launcher, wait, poll_interval_s
        self.launch_when_due, self.max_attempts, self.pin_to = launch_when_due, max_attempts, pin_to

    def _settings_doc(self, settings) -> dict:
        """The settings the trigger needs to reach the same store and launchers."""
        return {**self.carbonsched_settings, "home": str(settings.home), "database_url": settings.database_url}

    def execute(self, context):
        settings = self._settings()
        job, placement = read_job(self.job), None
        if self.pin_to:
            placement = context["ti"].xcom_pull(task_ids=self.pin_to)
            job = pinned_to(job, placement)
        clock = self._clock(not_before=placement["start"] if placement else None)
        store = Store.for_settings(settings)
        try:
            stored, outcome = submit_under_policy(job, self._policy(settings), launcher=self.launcher, now=clock.now(),
                                                  settings=settings, store=store, max_attempts=self.max_attempts)
            doc = job_summary(store.get(stored.id))
        finally:
            store.close()
        self.log.info("carbonsched: job %s %s (start %s)", doc["job_id"], doc["state"], doc["start_at"])
        return self._wait_or_return(doc, settings, clock)

    def _wait_or_return(self, doc: dict, settings, clock: Clock):
        if doc["final"] or not self.wait:
            return _finished(doc) if doc["final"] else doc
        self.defer(trigger=JobStateTrigger(doc["job_id"], self._settings_doc(settings), clock.to_dict(),
                                           self.poll_interval_s, self.launch_when_due), method_name="resume")

    def resume(self, context, event: dict | None = None):
        doc = dict(event or {})
        ck = Clock.from_dict(doc.pop("clock", None))
        if doc.get("due"):  # launch here, in the worker (a cloud launch may take minutes), then wait again
            settings = self._settings()
            store = Store.for_settings(settings)
            try:
                doc = job_summary(launch_if_due(store, doc["job_id"], ck.now(), settings, launchers_for(settings),
                                                clock=ck.now))
            finally:
                store.close()
            self.log.info("carbonsched: job %s due: %s", doc["job_id"], doc["state"])
            return self._wait_or_return(doc, settings, ck)
        return _finished(doc)


def _finished(doc: dict) -> dict:
    if doc["state"] != "succeeded":
        raise LaunchError(f"carbonsched job {doc['job_id']} ended {doc['state']}"
                          + (f" with exit code {doc['exit_code']}" if doc.get("exit_code") is not None else "")
                          + f"; `carbonsched status {doc['job_id']}` tells why")
    return doc
