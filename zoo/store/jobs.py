"""Leases and job runs: the rows behind :mod:`zoo.jobs` (taking, renewing and releasing a lease; recording
runs).

Every write takes the lease's advisory lock where a read decides what is written (PostgreSQL; SQLite writers
are serial anyway), so that a takeover and a renewal never interleave between a read and a write.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update

from zoo.errors import Hint, NotFoundError
from zoo.records import JobRunRecord
from zoo.store import models as m
from zoo.store.db import Database, retry


@dataclass(frozen=True)
class LeaseInfo:
    """Who holds a lease, since when and until when (unless renewed)."""

    name: str
    holder: str
    acquired_at: datetime
    expires_at: datetime


def job_run_record(r: m.JobRun) -> JobRunRecord:
    return JobRunRecord(
        r.id,
        r.kind,
        r.status,
        m.as_utc(r.started_at),
        m.as_utc(r.finished_at),  # type: ignore[arg-type]
        {k: v for k, v in (r.counts or {}).items()},
        r.message,
        r.holder,
    )


RUNS = Hint("zoo.job_runs(registry)", "`zoo jobs`")  # where to see the recorded runs


class JobRepository:
    """The ``leases`` and ``job_runs`` tables."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- leases -------------------------------------------------------------------------------------
    def try_acquire(
        self, name: str, holder: str, ttl_s: float, may_take_over: Callable[[LeaseInfo, datetime], bool]
    ) -> LeaseInfo | None:
        """Take lease ``name`` for ``holder`` unless another holder has it and ``may_take_over(info, now)``
        says no: None when taken, else who holds it."""

        def txn() -> LeaseInfo | None:
            with self.db.write() as s:
                self.db.lock_key(s, f"lease:{name}")
                row = s.get(m.Lease, name)
                now = m.utcnow()
                if row is not None and row.holder != holder:
                    expires = m.as_utc(row.expires_at)
                    assert expires is not None
                    info = LeaseInfo(row.name, row.holder, m.as_utc(row.acquired_at) or now, expires)
                    if not may_take_over(info, now):
                        return info
                until = now + timedelta(seconds=ttl_s)
                if row is None:
                    s.add(m.Lease(name=name, holder=holder, acquired_at=now, expires_at=until))
                else:
                    row.holder, row.acquired_at, row.expires_at = holder, now, until
                return None

        return retry(txn)

    def renew(self, name: str, holder: str, ttl_s: float) -> str | None:
        """Push the expiry ``ttl_s`` ahead; None, or who holds the lease now if ``holder`` lost it."""

        def txn() -> str | None:
            with self.db.write() as s:
                self.db.lock_key(s, f"lease:{name}")  # PostgreSQL: not between a takeover's read and write
                row = s.get(m.Lease, name)
                if row is None or row.holder != holder:
                    return row.holder if row is not None else "(nobody: it was released by another process)"
                row.expires_at = m.utcnow() + timedelta(seconds=ttl_s)
                return None

        return retry(txn)

    def release(self, name: str, holder: str) -> None:
        """Give lease ``name`` back (only if ``holder`` still holds it)."""

        def txn() -> None:
            with self.db.write() as s:
                s.execute(delete(m.Lease).where(m.Lease.name == name, m.Lease.holder == holder))

        retry(txn)

    def lease(self, name: str) -> LeaseInfo | None:
        with self.db.read() as s:
            row = s.get(m.Lease, name)
            if row is None:
                return None
            now = m.utcnow()
            return LeaseInfo(
                row.name, row.holder, m.as_utc(row.acquired_at) or now, m.as_utc(row.expires_at) or now
            )

    # -- runs ---------------------------------------------------------------------------------------
    def start_run(self, kind: str, holder: str) -> JobRunRecord:
        def txn() -> JobRunRecord:
            with self.db.write() as s:
                row = m.JobRun(
                    kind=kind, status="running", holder=holder, started_at=m.utcnow(), counts={}, message=""
                )
                s.add(row)
                s.flush()
                return job_run_record(row)

        return retry(txn)

    def update_run(self, run_id: int, values: Mapping[str, Any]) -> None:
        def txn() -> None:
            with self.db.write() as s:
                s.execute(update(m.JobRun).where(m.JobRun.id == run_id).values(**values))

        retry(txn)

    def finish_run(self, run_id: int, status: str, counts: Mapping[str, int], message: str) -> JobRunRecord:
        def txn() -> JobRunRecord:
            with self.db.write() as s:
                row = s.get(m.JobRun, run_id)
                if row is None:
                    raise NotFoundError("job run", str(run_id), f"see {RUNS}").hinting(RUNS)
                row.status, row.finished_at, row.counts, row.message = (
                    status,
                    m.utcnow(),
                    dict(counts),
                    message,
                )
                s.flush()
                return job_run_record(row)

        return retry(txn)

    def mark_killed(self, kind: str, current: int) -> list[int]:
        def txn() -> list[int]:
            with self.db.write() as s:
                ids = list(
                    s.scalars(
                        select(m.JobRun.id).where(
                            m.JobRun.kind == kind, m.JobRun.status == "running", m.JobRun.id != current
                        )
                    ).all()
                )
                if ids:
                    s.execute(
                        update(m.JobRun)
                        .where(m.JobRun.id.in_(ids))
                        .values(
                            status="killed",
                            message=m.JobRun.message + f" [found killed by run {current}: its process "
                            "ended without recording an outcome]",
                        )
                    )
                return ids

        return retry(txn)

    def runs(
        self, *, kind: str | None = None, status: str | None = None, limit: int | None = 50
    ) -> list[JobRunRecord]:
        q = select(m.JobRun).order_by(m.JobRun.id.desc())
        if kind:
            q = q.where(m.JobRun.kind == kind)
        if status:
            q = q.where(m.JobRun.status == status)
        if limit:
            q = q.limit(limit)
        with self.db.read() as s:
            return [job_run_record(r) for r in s.scalars(q).all()]

    def run(self, run_id: int) -> JobRunRecord:
        with self.db.read() as s:
            row = s.get(m.JobRun, run_id)
            if row is None:
                raise NotFoundError("job run", str(run_id), f"see {RUNS}").hinting(RUNS)
            return job_run_record(row)


__all__ = ["JobRepository", "LeaseInfo", "job_run_record"]
