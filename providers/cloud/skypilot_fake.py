"""A stateful stand-in for ``skypilot.SkyApi`` (shipped beside the real one, as httpx ships its
MockTransport), for tests and demos without clouds.

It takes the real ``sky.Task`` the launcher built and keeps state as SkyPilot does: clusters by
name (launching onto an existing name reuses it and queues another job, as ``sky launch -c``
does), managed jobs by increasing id, each with where it was placed. Provisioning walks the task's
``ordered`` resources top to bottom and skips the ones marked unavailable (``block``), recording
what it tried: SkyPilot's failover. With nothing left a cluster launch raises ``CapacityError`` (what
``SkyApi`` makes of ``ResourcesUnavailableError``) and a managed job ends ``FAILED_NO_RESOURCE``.
``finish`` ends a run with an exit code and log text; ``preempt`` takes a managed job's capacity
away, and the job recovers on the next entry that has some.

With ``state_path`` the state lives in a JSON file, re-read on every call, so two processes (one
killed mid-submit, one running the agent) see the same "cloud". Secret values are never kept:
only their names.
"""
from __future__ import annotations

import json
from pathlib import Path

from carbonsched.errors import CapacityError, LaunchError

TERMINAL_MANAGED = frozenset({"SUCCEEDED", "FAILED", "FAILED_SETUP", "FAILED_PRECHECKS", "FAILED_NO_RESOURCE",
                              "FAILED_CONTROLLER", "CANCELLED"})


def _entries(task) -> list[dict]:
    """The task's resources in SkyPilot's order of trial (a list is ``ordered``)."""
    resources = task.resources
    items = list(resources) if isinstance(resources, list) else sorted(resources, key=repr)
    return [{"cloud": str(r.cloud).lower() if r.cloud else None, "region": r.region, "instance_type": r.instance_type,
             "accelerators": dict(r.accelerators or {}), "use_spot": bool(r.use_spot)} for r in items]


def _key(entry: dict) -> str:
    return "/".join(str(entry.get(k) or "") for k in ("cloud", "region", "instance_type")).rstrip("/")


class FakeSky:
    """``SkyApi``'s stand-in (module docstring)."""

    def __init__(self, state_path: str | Path | None = None):
        self.path = Path(state_path) if state_path else None
        self._mem = {"clusters": {}, "managed": {}, "next_id": 1, "blocked": [], "calls": []}
        if self.path and not self.path.exists():
            self._save(self._mem)

    # -- state --------------------------------------------------------------------------------
    @property
    def state(self) -> dict:
        if self.path:
            return json.loads(self.path.read_text())
        return self._mem

    def _save(self, state: dict) -> None:
        if self.path:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
            tmp.replace(self.path)
        else:
            self._mem = state

    def block(self, *keys: str) -> None:
        """Mark capacity unavailable: ``"aws"``, ``"aws/us-west-2"`` or ``"aws/us-west-2/p5.48xlarge"``."""
        state = self.state
        state["blocked"] = sorted({*state["blocked"], *keys})
        self._save(state)

    def _blocked(self, state: dict, entry: dict) -> bool:
        key = _key(entry)
        return any(key == b or key.startswith(b + "/") for b in state["blocked"])

    def _provision(self, state: dict, entries: list[dict], start: int = 0) -> tuple[int | None, list[str]]:
        tried = []
        for i in range(start, len(entries)):
            tried.append(_key(entries[i]))
            if not self._blocked(state, entries[i]):
                return i, tried
        return None, tried

    @staticmethod
    def _summary(task) -> dict:
        return {"name": task.name, "run": task.run, "setup": task.setup, "workdir": task.workdir,
                "num_nodes": task.num_nodes, "envs": dict(task.envs), "secret_names": sorted(task.secrets),
                "file_mounts": dict(task.file_mounts or {})}

    # -- SkyApi -------------------------------------------------------------------------------
    def check(self) -> None:
        pass

    def launch(self, task, cluster_name: str, *, idle_minutes: int) -> int | None:
        state = self.state
        state["calls"].append(["launch", cluster_name])
        existing = state["clusters"].get(cluster_name)
        if existing and existing["status"] == "UP":  # sky launch -c on a live cluster: one more job on it
            existing["job_id"] += 1
            existing["job_status"] = "RUNNING"
            self._save(state)
            return existing["job_id"]
        entries = _entries(task)
        at, tried = self._provision(state, entries)
        if at is None:
            self._save(state)
            raise CapacityError(f"SkyPilot launch: no capacity in any ordered resource (tried {', '.join(tried)})",
                                code="ResourcesUnavailable")
        state["clusters"][cluster_name] = {**entries[at], "name": cluster_name, "status": "UP", "job_id": 1,
                                           "job_status": "RUNNING", "tried": tried, "entry": at,
                                           "idle_minutes": idle_minutes, "task": self._summary(task), "logs": ""}
        self._save(state)
        return 1

    def jobs_launch(self, task, name: str) -> int:
        state = self.state
        job_id = state["next_id"]
        state["next_id"] += 1
        state["calls"].append(["jobs_launch", name])
        entries = _entries(task)
        at, tried = self._provision(state, entries)
        placed = entries[at] if at is not None else {"cloud": None, "region": None, "instance_type": None,
                                                     "use_spot": None}
        state["managed"][str(job_id)] = {
            **placed, "job_id": job_id, "name": name, "status": "RUNNING" if at is not None else "FAILED_NO_RESOURCE",
            "tried": tried, "entry": at, "entries": entries, "recovery_count": 0, "task": self._summary(task), "logs": ""}
        self._save(state)
        return job_id

    def clusters(self, names: list[str]) -> list[dict]:
        clusters = self.state["clusters"]
        return [self._cluster(clusters[n]) for n in names if n in clusters]

    @staticmethod
    def _cluster(c: dict) -> dict:
        return {k: c.get(k) for k in ("name", "status", "cloud", "region", "zone", "instance_type", "use_spot")}

    def job_status(self, cluster_name: str) -> str | None:
        c = self.state["clusters"].get(cluster_name)
        return c["job_status"] if c else None

    def managed_jobs(self, *, name: str | None = None, job_ids: list[int] | None = None) -> list[dict]:
        out = []
        for j in self.state["managed"].values():
            if (name is None or j["name"] == name) and (job_ids is None or j["job_id"] in job_ids):
                out.append({k: j.get(k) for k in ("job_id", "name", "status", "cloud", "region", "zone", "instance_type",
                                                  "use_spot", "recovery_count")})
        return out

    def down(self, cluster_name: str) -> None:
        state = self.state
        state["calls"].append(["down", cluster_name])
        state["clusters"].pop(cluster_name, None)
        self._save(state)

    def jobs_cancel(self, job_id: int) -> None:
        state = self.state
        state["calls"].append(["jobs_cancel", job_id])
        j = state["managed"].get(str(job_id))
        if j is None:
            raise LaunchError(f"SkyPilot jobs cancel: no managed job {job_id}")
        if j["status"] not in TERMINAL_MANAGED:
            j["status"] = "CANCELLED"
        self._save(state)

    def tail_logs(self, cluster_name: str) -> str:
        c = self.state["clusters"].get(cluster_name)
        if c is None:
            raise LaunchError(f"SkyPilot logs: cluster {cluster_name!r} does not exist")
        return c["logs"]

    def jobs_tail_logs(self, job_id: int) -> str:
        j = self.state["managed"].get(str(job_id))
        if j is None:
            raise LaunchError(f"SkyPilot jobs logs: no managed job {job_id}")
        return j["logs"]

    # -- what happens on the "cloud" ----------------------------------------------------------
    def finish(self, name_or_id: str | int, code: int = 0, logs: str = "") -> None:
        """End a cluster's job (by cluster name) or a managed job (by id) with ``code``; its logs get
        ``logs`` and the exit-code line the task's run script prints."""
        state = self.state
        text = logs + ("" if not logs or logs.endswith("\n") else "\n") + f"carbonsched-exit-code: {code}\n"
        if isinstance(name_or_id, int):
            j = state["managed"][str(name_or_id)]
            j["status"], j["logs"] = ("SUCCEEDED" if code == 0 else "FAILED"), j["logs"] + text
        else:
            c = state["clusters"][name_or_id]
            c["job_status"], c["logs"] = ("SUCCEEDED" if code == 0 else "FAILED"), c["logs"] + text
        self._save(state)

    def preempt(self, job_id: int) -> None:
        """The spot capacity under a managed job goes away (and stays away); the job recovers on the
        next ordered entry with capacity, or fails with none."""
        state = self.state
        j = state["managed"][str(job_id)]
        state["blocked"] = sorted({*state["blocked"], _key(j["entries"][j["entry"]])})
        at, tried = self._provision(state, j["entries"])
        j["recovery_count"] += 1
        j["tried"] += tried
        if at is None:
            j.update(status="FAILED_NO_RESOURCE", entry=None)
        else:
            j.update(status="RUNNING", entry=at, **{k: j["entries"][at][k] for k in ("cloud", "region", "instance_type",
                                                                                      "use_spot")})
        self._save(state)
