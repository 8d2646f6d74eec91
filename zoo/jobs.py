"""Batch jobs over a registry: a lease so that one run works at a time, and a record of every run.

- :class:`Lease` is a row in the ``leases`` table, taken atomically (SQLite: inside ``BEGIN IMMEDIATE``;
  PostgreSQL: under a transaction-scoped advisory lock), renewed by a background thread while the job
  runs, and free once it has not been renewed for its TTL, so a holder killed with SIGKILL blocks others
  for at most that long. A holder on this host whose process no longer exists is noticed at once.
- Runs are rows in ``job_runs``: :func:`start_run` when a run has its lease, :func:`update_run` as it
  goes, :func:`finish_run` at the end. A run left ``running`` by a process that died is marked ``killed``
  by the next run of its kind (:func:`mark_killed`), which holds the lease and so knows it is not alive.
- Other long work (generator training, the tiny-zoo builders, the main job) is recorded the same way,
  without a lease: :func:`recording` (a context manager) or :func:`recorded` (a decorator) start a run,
  and end it ``succeeded`` with a summary, ``failed`` with the error, or ``killed`` when interrupted; ``zoo
  jobs`` lists them all. Such a run left ``running`` by a process on this host that no longer exists is
  marked ``killed`` when the next run of its kind starts (:func:`mark_dead`).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any, TypeVar

from zoo.errors import ConfigError, LeaseHeldError, LeaseLostError, worded
from zoo.records import JobRunRecord
from zoo.registry import Registry
from zoo.store.jobs import LeaseInfo

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

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


# ----------------------------------------------------------------------------------------------------
# recording long work that holds no lease (training, builders, the main job)
# ----------------------------------------------------------------------------------------------------
def mark_dead(registry: Registry, kind: str) -> list[int]:
    """Mark runs of ``kind`` left ``running`` by a process on this host that no longer exists as ``killed``;
    returns their ids (runs of live processes, or of other hosts, are left as they are)."""
    dead = [
        r for r in job_runs(registry, kind=kind, status="running", limit=None) if holder_is_dead(r.holder)
    ]
    for r in dead:
        note = "[found killed: its process ended without recording an outcome]"
        registry.repos.jobs.update_run(r.id, {"status": "killed", "message": f"{r.message} {note}".strip()})
    if dead:
        log.warning("job %s: runs %s had died mid-way; marked killed", kind, [r.id for r in dead])
    return [r.id for r in dead]


class JobRun:
    """A run being recorded (what :func:`recording` yields): its id, and its counts and message so far."""

    def __init__(self, registry: Registry | None, kind: str, record: JobRunRecord | None) -> None:
        self.registry = registry  # None when the run could not be recorded (then nothing is stored)
        self.kind = kind
        self.record = record
        self.counts: dict[str, int] = {}
        self.message = ""

    @property
    def id(self) -> int | None:
        return self.record.id if self.record is not None else None

    def update(self, *, counts: Mapping[str, int] | None = None, message: str | None = None) -> None:
        """Set (and store now) the run's counts and message, e.g. how far it got and how long it expects;
        what is set last is the summary :func:`recording` stores when the run ends."""
        if counts is not None:
            self.counts = {k: int(v) for k, v in counts.items()}
        if message is not None:
            self.message = message
        if self.registry is not None and self.id is not None:
            try:
                update_run(self.registry, self.id, counts=self.counts, message=self.message)
            except Exception as exc:  # recording must never stop the work it records
                log.warning("job %s: could not record progress of run %s (%s)", self.kind, self.id, exc)


_current: contextvars.ContextVar[JobRun | None] = contextvars.ContextVar("zoo_job_run", default=None)


def current_run() -> JobRun | None:
    """The innermost run being recorded in this thread (:func:`recording`), or None: what a long step deep
    inside a recorded job (a training stage) updates with its progress and expected time."""
    return _current.get()


def _recording_disabled() -> bool:
    """Under torchrun every process runs the job; rank 0 alone records it."""
    return os.environ.get("RANK", "0") not in ("", "0")


@contextlib.contextmanager
def recording(registry: Registry, kind: str) -> Iterator[JobRun]:
    """Record the work done in the ``with`` block as a run of ``kind`` in ``registry`` (``zoo jobs``).

    The run starts ``running``; it ends ``succeeded`` with the counts and message last given to
    :meth:`JobRun.update` (its summary), ``failed`` with the error when the block raises (the error is
    raised on), or ``killed`` when interrupted (Ctrl-C, SystemExit). Recording never stops the work: when
    the registry cannot record (e.g. a read-only database), the block runs unrecorded, with a warning.
    Under ``torchrun`` only rank 0 records.
    """
    run = JobRun(None, kind, None)
    if not _recording_disabled():
        try:
            mark_dead(registry, kind)
            run = JobRun(registry, kind, start_run(registry, kind, new_holder()))
        except Exception as exc:
            log.warning("job %s: this run is not recorded (%s: %s)", kind, type(exc).__name__, exc)
    t0 = time.perf_counter()
    token = _current.set(run)

    def end(status: str, message: str) -> None:
        if run.registry is None or run.id is None:
            return
        try:
            finish_run(registry, run.id, status, counts=run.counts, message=message)
        except Exception as exc:
            log.warning("job %s: could not record the end of run %s (%s)", kind, run.id, exc)

    try:
        yield run
    except Exception as exc:
        end(
            "failed",
            f"{type(exc).__name__}: {worded(exc)}"[:2000] + (f" ({run.message})" if run.message else ""),
        )
        raise
    except BaseException as exc:  # KeyboardInterrupt, SystemExit: stopped from outside
        end("killed", f"interrupted ({type(exc).__name__})" + (f"; {run.message}" if run.message else ""))
        raise
    else:
        end("succeeded", run.message)
    finally:
        _current.reset(token)
        log.info("job %s: run %s took %.1f s", kind, run.id, time.perf_counter() - t0)


def recorded(
    kind: str,
    *,
    registry: str | Callable[[Mapping[str, Any]], Any] = "registry",
    summary: Callable[[Any], tuple[Mapping[str, int], str] | str] | None = None,
) -> Callable[[F], F]:
    """Decorate a long-running function so that each call is recorded as a run of ``kind``
    (:func:`recording`).

    ``registry``: the name of the argument holding the :class:`~zoo.Registry` to record in, or a callable
    that gets the call's arguments (by name) and returns a registry, or a SQLite path or URL to open one at.
    ``summary``: makes the run's summary from the function's result, as a message or ``(counts, message)``.
    """

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            where = registry(bound.arguments) if callable(registry) else bound.arguments[registry]
            with contextlib.ExitStack() as stack:
                if isinstance(where, (str, os.PathLike)):  # a path or URL: open the registry for the run
                    where = stack.enter_context(Registry(where))
                run = stack.enter_context(recording(where, kind))
                result = fn(*args, **kwargs)
                if summary is not None:
                    made = summary(result)
                    counts, message = ({}, made) if isinstance(made, str) else made
                    run.update(counts=counts, message=message)
                return result

        return wrapper  # type: ignore[return-value]

    return decorate


__all__ = [
    "DEFAULT_TTL_S",
    "JOB_STATUSES",
    "JobRun",
    "Lease",
    "LeaseInfo",
    "finish_run",
    "get_run",
    "holder_is_dead",
    "job_runs",
    "lease_info",
    "mark_dead",
    "mark_killed",
    "current_run",
    "new_holder",
    "record_run",
    "recorded",
    "recording",
    "start_run",
    "update_run",
]
