"""Batch jobs over a registry: a lease so that one run works at a time, and a record of every run.

- :class:`Lease` is a row in the ``leases`` table, taken atomically (SQLite: inside ``BEGIN IMMEDIATE``;
  PostgreSQL: under a transaction-scoped advisory lock), renewed by a background thread while the job
  runs, and free once it has not been renewed for its TTL, so a holder killed with SIGKILL blocks others
  for at most that long. A holder on this host whose process no longer exists is noticed at once.
- Runs are rows in ``job_runs``: :func:`start_run` when a run has its lease, :func:`update_run` as it
  goes, :func:`finish_run` at the end. A run left ``running`` by a process that died is marked ``killed``
  by the next run of its kind (:func:`mark_killed`), which holds the lease and so knows it is not alive.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from zoo.errors import ConfigError, LeaseHeldError, LeaseLostError
from zoo.records import JobRunRecord
from zoo.registry import Registry
from zoo.store.jobs import LeaseInfo

log = logging.getLogger(__name__)

JOB_STATUSES = ("running", "succeeded", "failed", "skipped", "killed")  # a run's life; see JobRunRecord
DEFAULT_TTL_S = 300.0  # a lease not renewed for this long is free


def new_holder() -> str:
    """An identity for one run: ``host:pid:token`` (the token tells apart runs of one process)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def holder_is_dead(holder: str) -> bool:
    """Whether ``holder`` names a process on this host that no longer exists (POSIX only; else False)."""
    parts = holder.rsplit(":", 2)
    if os.name != "posix" or len(parts) != 3 or parts[0] != socket.gethostname():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except (ValueError, OSError):  # not a pid, or a live process of another user
        return False
    return False


class Lease:
    """A named lease in the registry's database, held by this process while a job runs.

    ``with Lease(registry, "reindex", wait_s=60):`` takes the lease (waiting up to ``wait_s`` seconds for
    the current holder; then :class:`~zoo.errors.LeaseHeldError` naming it), renews it every third of
    ``ttl_s`` on a background thread (unless ``heartbeat=False``), and releases it at the end. A lease whose
    holder stopped renewing
    for ``ttl_s`` (killed, host down), or whose holder is a dead process on this host, is taken over.
    Call :meth:`check` between steps: it raises :class:`~zoo.errors.LeaseLostError` if another process took
    the lease over meanwhile (this one stalled past the TTL), so that two runs never both carry on.
    """

    def __init__(
        self,
        registry: Registry,
        name: str,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        wait_s: float = 0.0,
        poll_s: float = 0.5,
        holder: str | None = None,
        heartbeat: bool = True,
    ) -> None:
        if ttl_s <= 0:
            raise ConfigError(
                f"lease TTL must be positive (got {ttl_s}); pass a number of seconds such as 300"
            )
        if wait_s < 0:
            raise ConfigError(
                f"wait must be zero or positive (got {wait_s}); pass seconds to wait for the lease"
            )
        self.registry = registry
        self.name = name
        self.ttl_s = float(ttl_s)
        self.wait_s = float(wait_s)
        self.poll_s = float(poll_s)
        self.holder = holder or new_holder()  # host:pid:token; see new_holder
        self.heartbeat = heartbeat  # renew on a background thread (False: call renew() yourself)
        self.held = False
        self._lost_to: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"Lease({self.name!r}, holder={self.holder!r}, held={self.held})"

    # -- taking and giving back ---------------------------------------------------------------------
    def _try_acquire(self) -> LeaseInfo | None:
        """Take the lease if it is free; None when taken, else who holds it."""

        def may_take_over(other: LeaseInfo, now: datetime) -> bool:
            if other.expires_at > now and not holder_is_dead(other.holder):
                return False
            log.warning(
                "job %s: taking over the lease of %s (%s)",
                self.name,
                other.holder,
                "its process is gone" if other.expires_at > now else "it expired",
            )
            return True

        return self.registry.repos.jobs.try_acquire(self.name, self.holder, self.ttl_s, may_take_over)

    def acquire(self) -> Lease:
        """Take the lease, waiting up to ``wait_s`` seconds; :class:`LeaseHeldError` if it stays held."""
        if self.held:
            return self
        deadline = time.monotonic() + self.wait_s
        told = False
        while True:
            other = self._try_acquire()
            if other is None:
                break
            if time.monotonic() >= deadline:
                raise LeaseHeldError(self.name, other.holder, other.expires_at.isoformat(timespec="seconds"))
            if not told:
                log.info(
                    "job %s: waiting up to %.0f s for the lease held by %s",
                    self.name,
                    self.wait_s,
                    other.holder,
                )
                told = True
            time.sleep(min(self.poll_s, max(0.0, deadline - time.monotonic())))
        self.held = True
        self._lost_to = None
        self._stop.clear()
        if self.heartbeat:
            self._thread = threading.Thread(target=self._beat, name=f"zoo-lease-{self.name}", daemon=True)
            self._thread.start()
        log.info("job %s: lease taken by %s (TTL %.0f s)", self.name, self.holder, self.ttl_s)
        return self

    def renew(self) -> bool:
        """Push the expiry ``ttl_s`` ahead; False (and :meth:`check` raises from then on) if the lease is
        lost."""
        lost_to = self.registry.repos.jobs.renew(self.name, self.holder, self.ttl_s)
        if lost_to is not None:
            self._lost_to = lost_to
            log.error("job %s: lease of %s was taken over by %s", self.name, self.holder, lost_to)
        return lost_to is None

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                if not self.renew():
                    return
            except Exception as exc:  # a database hiccup: try again at the next beat, before the TTL runs out
                log.warning("job %s: could not renew the lease (%s); retrying", self.name, exc)

    def check(self) -> None:
        """Raise :class:`LeaseLostError` if another process took the lease over since it was taken."""
        if self._lost_to is not None:
            raise LeaseLostError(self.name, self.holder, self._lost_to)

    def release(self) -> None:
        """Stop renewing and give the lease back (only if this process still holds it)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._thread = None
        if not self.held:
            return

        self.registry.repos.jobs.release(self.name, self.holder)
        self.held = False
        log.info("job %s: lease released by %s", self.name, self.holder)

    def __enter__(self) -> Lease:
        return self if self.held else self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def lease_info(registry: Registry, name: str) -> LeaseInfo | None:
    """Who holds lease ``name`` now (None when nobody; an expired lease is still shown until taken over)."""
    return registry.repos.jobs.lease(name)


# ----------------------------------------------------------------------------------------------------
# runs
# ----------------------------------------------------------------------------------------------------
def _check_status(status: str) -> None:
    if status not in JOB_STATUSES:
        raise ValueError(f"unknown job status {status!r}; choose from {', '.join(JOB_STATUSES)}")


def start_run(registry: Registry, kind: str, holder: str) -> JobRunRecord:
    """Record a run of ``kind`` as started now (status ``running``)."""
    return registry.repos.jobs.start_run(kind, holder)


def update_run(
    registry: Registry, run_id: int, *, counts: Mapping[str, int] | None = None, message: str | None = None
) -> None:
    """Store a running job's progress (counts so far; a killed run keeps what it had recorded)."""
    values: dict[str, Any] = {}
    if counts is not None:
        values["counts"] = dict(counts)
    if message is not None:
        values["message"] = message
    if values:
        registry.repos.jobs.update_run(run_id, values)


def finish_run(
    registry: Registry, run_id: int, status: str, *, counts: Mapping[str, int], message: str = ""
) -> JobRunRecord:
    """Record how a run ended: ``succeeded``, ``failed`` or ``skipped``, with its counts and a message."""
    _check_status(status)
    return registry.repos.jobs.finish_run(run_id, status, counts, message)


def record_run(
    registry: Registry,
    kind: str,
    status: str,
    holder: str,
    *,
    counts: Mapping[str, int] | None = None,
    message: str = "",
) -> JobRunRecord:
    """Record a run that ended as it started (e.g. ``skipped`` because another run held the lease)."""
    rec = start_run(registry, kind, holder)
    return finish_run(registry, rec.id, status, counts=counts or {}, message=message)


def mark_killed(registry: Registry, kind: str, *, current: int) -> list[int]:
    """Mark runs of ``kind`` still ``running`` other than ``current`` as ``killed``; returns their ids.

    Call it only while holding the job's lease: then no other run of ``kind`` can be alive.
    """
    ids = registry.repos.jobs.mark_killed(kind, current)
    if ids:
        log.warning(
            "job %s: runs %s had died mid-way; marked killed (this run redoes what they left)", kind, ids
        )
    return ids


def job_runs(
    registry: Registry, *, kind: str | None = None, status: str | None = None, limit: int | None = 50
) -> list[JobRunRecord]:
    """Recorded runs, newest first, optionally of one ``kind`` or ``status``."""
    if status:
        _check_status(status)
    return registry.repos.jobs.runs(kind=kind, status=status, limit=limit)


def get_run(registry: Registry, run_id: int) -> JobRunRecord:
    """One recorded run by id."""
    return registry.repos.jobs.run(run_id)


__all__ = [
    "DEFAULT_TTL_S",
    "JOB_STATUSES",
    "Lease",
    "LeaseInfo",
    "finish_run",
    "get_run",
    "holder_is_dead",
    "job_runs",
    "lease_info",
    "mark_killed",
    "new_holder",
    "record_run",
    "start_run",
    "update_run",
]
