"""The heartbeat that keeps a launch lease alive while a cloud call runs.

A claim (``Store.claim``) holds a job until ``lease_expires_at``. ``Lease`` renews it every
``lease_s / 4`` from a thread with its own connection to the store (``Store.companion``, opened
once per store and reused by the next launch), so a launch that takes longer than
the lease (a slow EC2 API, a retried request) is never mistaken for a dead agent. When a renewal
finds the lease gone (another agent reclaimed an expired one, or the job was cancelled), ``lost``
turns true and the owner stops before its next cloud call.
"""
from __future__ import annotations

import threading
from datetime import datetime
from typing import Callable

from carbonsched.errors import CarbonschedError
from carbonsched.run.store import MIN_LEASE_S, Store


class Lease:
    def __init__(self, store: Store, job_id: str, worker: str, lease_s: float, clock: Callable[[], datetime]):
        self.store, self.job_id, self.worker = store, job_id, worker
        self.lease_s, self.clock = lease_s, clock
        self.every_s = max(lease_s, MIN_LEASE_S) / 4
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "Lease":
        self._thread = threading.Thread(target=self._run, name=f"lease-{self.job_id}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        try:
            store = self.store.companion()
        except CarbonschedError:
            self.lost = True
            return
        try:
            while not self._stop.wait(self.every_s):
                if not store.renew(self.job_id, self.worker, self.clock(), self.lease_s):
                    self.lost = True
                    return
        except CarbonschedError:  # the store went away or stayed locked: stop launching rather than risk it
            self.lost = True
            self.store.drop_companion()
