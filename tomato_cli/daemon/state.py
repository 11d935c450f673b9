"""The daemon's persistent state: pipelines, jobs and driver processes, in one SQLite file.

The daemon is the only writer. Every change is committed at once, so a kill -9 of the
daemon loses nothing it has acknowledged.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tomato_cli.models import Component, Job

SCHEMA = """
CREATE TABLE IF NOT EXISTS pipelines (
    name TEXT PRIMARY KEY,
    sampleid TEXT,
    ready INTEGER NOT NULL DEFAULT 0,
    jobid INTEGER,
    components TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    status TEXT NOT NULL,
    job TEXT NOT NULL,
    prefect_status TEXT
);
CREATE TABLE IF NOT EXISTS launches (
    jobid INTEGER PRIMARY KEY,
    grant_token TEXT NOT NULL,
    lease_id TEXT,
    in_engine INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS drivers (
    name TEXT PRIMARY KEY,
    port INTEGER NOT NULL,
    pid INTEGER,
    restarts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


# what Prefect shows of a queued job besides its status: its priority and its hold
_MARKS_SQL = (
    "printf('%d:%d', COALESCE(json_extract(job, '$.priority'), 0),"
    " COALESCE(json_extract(job, '$.held'), 0))"
)


def job_marks(job: Job) -> str:
    """A job's priority and hold as mirrored in Prefect (``priority:held``, as ``_MARKS_SQL``)."""
    return f"{job.priority}:{int(job.held)}"


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class PipelineState:
    name: str
    components: list[Component]
    sampleid: str | None = None
    ready: bool = False
    jobid: int | None = None

    def roles(self) -> dict[str, Component]:
        return {c.role: c for c in self.components}

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ready": self.ready,
            "sampleid": self.sampleid,
            "jobid": self.jobid,
            "components": [c.model_dump() for c in self.components],
        }


@dataclass
class DriverRecord:
    name: str
    port: int
    pid: int | None = None
    restarts: int = 0


@dataclass(frozen=True)
class JobRef:
    """The few fields of a job that are read often, without its payload."""

    id: int
    status: str
    pid: int | None
    jobpath: str | None
    flow_run_id: str | None


class StateStore:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.lock = threading.RLock()
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self._migrate()
        if self.get_meta("instance") is None:
            import uuid

            self.set_meta("instance", uuid.uuid4().hex[:12])

    @property
    def instance(self) -> str:
        """Names this database among all that ever were (its jobs' flow runs carry it, so
        that a host started afresh is never handed an old job's flow run)."""
        return self.get_meta("instance") or ""

    def _migrate(self) -> None:
        """Add what newer versions keep to a database made by an older one."""
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(jobs)")}
        if "prefect_state_id" not in columns:
            self.db.execute("ALTER TABLE jobs ADD COLUMN prefect_state_id TEXT")
        if "prefect_marks" not in columns:
            self.db.execute("ALTER TABLE jobs ADD COLUMN prefect_marks TEXT")
        launch_columns = {row[1] for row in self.db.execute("PRAGMA table_info(launches)")}
        if "in_engine" not in launch_columns:
            self.db.execute("ALTER TABLE launches ADD COLUMN in_engine INTEGER NOT NULL DEFAULT 1")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    # meta
    def get_meta(self, key: str) -> str | None:
        with self.lock:
            row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # pipelines
    def pipelines(self) -> dict[str, PipelineState]:
        with self.lock:
            rows = self.db.execute(
                "SELECT name, sampleid, ready, jobid, components FROM pipelines ORDER BY name"
            ).fetchall()
        return {
            name: PipelineState(
                name=name,
                sampleid=sampleid,
                ready=bool(ready),
                jobid=jobid,
                components=[Component.model_validate(c) for c in json.loads(comps)],
            )
            for name, sampleid, ready, jobid, comps in rows
        }

    def save_pipeline(self, pip: PipelineState, db: sqlite3.Connection | None = None) -> None:
        comps = json.dumps([c.model_dump() for c in pip.components])
        sql = "INSERT OR REPLACE INTO pipelines VALUES (?, ?, ?, ?, ?)"
        params = (pip.name, pip.sampleid, int(pip.ready), pip.jobid, comps)
        if db is not None:
            db.execute(sql, params)
        else:
            with self.transaction() as tx:
                tx.execute(sql, params)

    def delete_pipeline(self, name: str, db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM pipelines WHERE name=?", (name,))

    # jobs
    def new_job_id(
        self, db: sqlite3.Connection, lab_number: int | None = None, floor: int = 0
    ) -> int:
        """The next job id: 1, 2, 3, ...; on a lab server ``k * 100 + lab_number``, above
        ``floor`` (the highest id this host used in the lab), so that job ids stay unique
        across the lab's hosts."""
        if lab_number is None:
            cur = db.execute("INSERT INTO jobs (status, job) VALUES ('q', '{}')")
            return int(cur.lastrowid)
        (highest,) = db.execute("SELECT COALESCE(MAX(id), 0) FROM jobs").fetchone()
        jobid = (max(int(highest), floor) // 100 + 1) * 100 + lab_number
        db.execute("INSERT INTO jobs (id, status, job) VALUES (?, 'q', '{}')", (jobid,))
        return jobid

    def save_job(self, job: Job, db: sqlite3.Connection | None = None) -> None:
        sql = "UPDATE jobs SET status=?, job=? WHERE id=?"
        params = (job.status, job.model_dump_json(), job.id)
        if db is not None:
            db.execute(sql, params)
        else:
            with self.transaction() as tx:
                tx.execute(sql, params)

    def job_status(self, jobid: int, db: sqlite3.Connection | None = None) -> str | None:
        """The stored status of a job (None for an unknown job or one being submitted)."""
        with self.lock:
            row = (
                (db or self.db)
                .execute("SELECT status FROM jobs WHERE id=? AND job != '{}'", (jobid,))
                .fetchone()
            )
        return row[0] if row else None

    def job(self, jobid: int) -> Job | None:
        with self.lock:
            row = self.db.execute("SELECT job FROM jobs WHERE id=?", (jobid,)).fetchone()
        return Job.model_validate_json(row[0]) if row and row[0] != "{}" else None

    def jobs(self, statuses: tuple[str, ...] | None = None) -> list[Job]:
        with self.lock:
            if statuses:
                marks = ",".join("?" * len(statuses))
                rows = self.db.execute(
                    f"SELECT job FROM jobs WHERE status IN ({marks}) ORDER BY id", statuses
                ).fetchall()
            else:
                rows = self.db.execute("SELECT job FROM jobs ORDER BY id").fetchall()
        return [Job.model_validate_json(r[0]) for r in rows if r[0] != "{}"]

    def jobs_shown(self, ended: int) -> tuple[list[Job], int]:
        """Every job not ended, and the ``ended`` that ended last; with how many ended jobs
        are left out (``ketchup status`` without ``--all``)."""
        final = "status IN ('c', 'ce', 'cd') AND job != '{}'"
        with self.lock:
            rows = self.db.execute(
                "SELECT job FROM jobs WHERE job != '{}' AND (status NOT IN ('c', 'ce', 'cd')"
                f" OR id IN (SELECT id FROM jobs WHERE {final} ORDER BY"
                " json_extract(job, '$.completed_at') DESC, id DESC LIMIT ?)) ORDER BY id",
                (max(ended, 0),),
            ).fetchall()
            (total,) = self.db.execute(f"SELECT COUNT(*) FROM jobs WHERE {final}").fetchone()
        return [Job.model_validate_json(r[0]) for r in rows], max(int(total) - max(ended, 0), 0)

    def job_refs(self, statuses: tuple[str, ...]) -> list[JobRef]:
        """Id, status, process and flow run of the jobs in these statuses, without parsing
        them: the job monitor and the Prefect bridge look at every active job every few
        seconds, which with hundreds of jobs must stay cheap."""
        marks = ",".join("?" * len(statuses))
        with self.lock:
            rows = self.db.execute(
                "SELECT id, status, json_extract(job, '$.pid'), json_extract(job, '$.jobpath'),"
                " json_extract(job, '$.flow_run_id') FROM jobs"
                f" WHERE status IN ({marks}) AND job != '{{}}' ORDER BY id",
                statuses,
            ).fetchall()
        return [JobRef(*r) for r in rows]

    def jobs_unsynced(self) -> list[tuple[Job, str | None]]:
        """Jobs whose Prefect mirror lags: no flow run yet, or another status pushed."""
        with self.lock:
            rows = self.db.execute(
                "SELECT job, prefect_status FROM jobs WHERE job != '{}' AND ("
                "json_extract(job, '$.flow_run_id') IS NULL OR prefect_status IS NULL "
                "OR prefect_status != status) ORDER BY id"
            ).fetchall()
        return [(Job.model_validate_json(r[0]), r[1]) for r in rows]

    def jobs_unmarked(self) -> list[tuple[Job, str | None]]:
        """Queued jobs whose flow run shows their status but not their priority and hold
        (``priority:held``, as :func:`job_marks` writes it), with the marks Prefect shows."""
        with self.lock:
            rows = self.db.execute(
                "SELECT job, prefect_marks FROM jobs WHERE job != '{}' AND status IN ('q', 'qw')"
                " AND json_extract(job, '$.flow_run_id') IS NOT NULL AND prefect_status = status"
                f" AND COALESCE(prefect_marks, '') != {_MARKS_SQL} ORDER BY id"
            ).fetchall()
        return [(Job.model_validate_json(r[0]), r[1]) for r in rows]

    def set_prefect_marks(self, jobid: int, marks: str) -> None:
        """Prefect now shows these marks (see :func:`job_marks`) of the job."""
        with self.transaction() as db:
            db.execute("UPDATE jobs SET prefect_marks=? WHERE id=?", (marks, jobid))

    def set_prefect_status(
        self,
        jobid: int,
        status: str | None,
        state_id: str | None = None,
        db: sqlite3.Connection | None = None,
        while_status: str | None = None,
    ) -> None:
        """Prefect now shows ``status`` for the job. ``state_id`` is the state tomato set
        for it; without one, the last state tomato set is kept (a state its flow run wrote
        itself, such as Running, is not tomato's). With ``while_status``, the status is
        recorded only if the job is still in that status (a push read earlier must not undo
        what came since); the state id is recorded anyway, as the state tomato set last."""
        sql = (
            "UPDATE jobs SET prefect_status=CASE WHEN ?1 IS NULL OR status=?1 THEN ?2"
            " ELSE prefect_status END, prefect_state_id=COALESCE(?3, prefect_state_id)"
            " WHERE id=?4"
        )
        params = (while_status, status, state_id, jobid)
        if db is not None:
            db.execute(sql, params)
            return
        with self.transaction() as tx:
            tx.execute(sql, params)

    def own_state_ids(self) -> dict[int, str]:
        """The last Prefect state tomato set on each live or waiting job's flow run."""
        with self.lock:
            rows = self.db.execute(
                "SELECT id, prefect_state_id FROM jobs WHERE prefect_state_id IS NOT NULL"
                " AND status IN ('q', 'qw', 'r', 'rp', 'rd')"
            ).fetchall()
        return dict(rows)

    def unsynced_count(self) -> int:
        with self.lock:
            row = self.db.execute(
                "SELECT COUNT(*) FROM jobs WHERE job != '{}' AND ("
                "json_extract(job, '$.flow_run_id') IS NULL OR prefect_status IS NULL "
                "OR prefect_status != status)"
            ).fetchone()
        return int(row[0])

    # launches: the gate's grant of a pipeline to one start of a job's flow run
    def save_launch(
        self,
        jobid: int,
        grant: str,
        lease_id: str | None,
        db: sqlite3.Connection | None = None,
        in_engine: bool = True,
    ) -> None:
        """Record one start of the job. ``in_engine``: Prefect's flow engine runs it (and
        writes its Running and its end); else it runs without Prefect, which was away when
        it started, and the Prefect sync writes every state of its flow run."""
        sql = (
            "INSERT OR REPLACE INTO launches (jobid, grant_token, lease_id, in_engine)"
            " VALUES (?, ?, ?, ?)"
        )
        params = (jobid, grant, lease_id, int(in_engine))
        if db is not None:
            db.execute(sql, params)
        else:
            with self.transaction() as tx:
                tx.execute(sql, params)

    def runs_in_engine(self, jobid: int, db: sqlite3.Connection | None = None) -> bool:
        """Whether the job's last start runs in Prefect's flow engine (a job not started
        yet counts as one: its engine will write its Running)."""
        with self.lock:
            row = (
                (db or self.db)
                .execute("SELECT in_engine FROM launches WHERE jobid=?", (jobid,))
                .fetchone()
            )
        return row is None or bool(row[0])

    def set_lease(self, jobid: int, lease_id: str | None) -> None:
        with self.transaction() as db:
            db.execute("UPDATE launches SET lease_id=? WHERE jobid=?", (lease_id, jobid))

    def leases(self, statuses: tuple[str, ...]) -> dict[int, str]:
        """Lease ids of the pipeline slots held for jobs in these statuses."""
        marks = ",".join("?" * len(statuses))
        with self.lock:
            rows = self.db.execute(
                "SELECT launches.jobid, launches.lease_id FROM launches JOIN jobs"
                " ON jobs.id = launches.jobid WHERE launches.lease_id IS NOT NULL"
                f" AND jobs.status IN ({marks})",
                statuses,
            ).fetchall()
        return dict(rows)

    def unleased(self, statuses: tuple[str, ...]) -> list[int]:
        """Jobs in these statuses started without a pipeline slot (Prefect was away)."""
        marks = ",".join("?" * len(statuses))
        with self.lock:
            rows = self.db.execute(
                "SELECT launches.jobid FROM launches JOIN jobs ON jobs.id = launches.jobid"
                f" WHERE launches.lease_id IS NULL AND jobs.status IN ({marks})",
                statuses,
            ).fetchall()
        return [r[0] for r in rows]

    def grant_of(self, jobid: int) -> str | None:
        with self.lock:
            row = self.db.execute(
                "SELECT grant_token FROM launches WHERE jobid=?", (jobid,)
            ).fetchone()
        return row[0] if row else None

    # drivers
    def driver_records(self) -> dict[str, DriverRecord]:
        with self.lock:
            rows = self.db.execute("SELECT name, port, pid, restarts FROM drivers").fetchall()
        return {r[0]: DriverRecord(*r) for r in rows}

    def save_driver(self, rec: DriverRecord) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO drivers VALUES (?, ?, ?, ?)",
                (rec.name, rec.port, rec.pid, rec.restarts),
            )

    def delete_driver(self, name: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM drivers WHERE name=?", (name,))
