"""SQLite side of the registry's enterprises and their no-production periods.

Tables of their own (``enterprises``, ``shutdown_periods``), created with ``IF NOT
EXISTS``, so a database from before they existed opens unchanged. Periods are
never deleted: an ordered shutdown that is lifted early gets its end moved (audited),
so the record of what was ordered, by whom and when stays.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, replace

from gateway import audit
from gateway.errors import EwgError, NotFoundError
from gateway.registry_model import PERIOD_KINDS, Enterprise, ShutdownPeriod


class InvalidEnterpriseError(EwgError, ValueError):
    """An enterprise or a period that cannot be used (bad hours, end before start, ...)."""


def check_period(period: ShutdownPeriod) -> None:
    if period.end_ms <= period.start_ms:
        raise InvalidEnterpriseError("a shutdown period must end after it starts")
    if period.kind not in PERIOD_KINDS:
        raise InvalidEnterpriseError(
            f"period kind {period.kind!r} unknown; known: {', '.join(PERIOD_KINDS)}"
        )


SCHEMA = """
CREATE TABLE IF NOT EXISTS enterprises (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    hours TEXT NOT NULL,
    days TEXT NOT NULL,
    timezone TEXT NOT NULL,
    baseline_day_kwh REAL,
    baseline_load_kw REAL
);
CREATE TABLE IF NOT EXISTS shutdown_periods (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    enterprise_id TEXT NOT NULL REFERENCES enterprises (id),
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    ordered_by TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL DEFAULT 'shutdown',
    created_by TEXT NOT NULL DEFAULT '',
    created_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS shutdown_periods_enterprise ON shutdown_periods (enterprise_id);
"""

_ENTERPRISE_COLUMNS = "id, name, hours, days, timezone, baseline_day_kwh, baseline_load_kw"
_PERIOD_COLUMNS = (
    "id, enterprise_id, start_ms, end_ms, reason, ordered_by, kind, created_by, created_ms"
)


def load(conn: sqlite3.Connection) -> tuple[list[Enterprise], list[ShutdownPeriod]]:
    enterprises = [
        Enterprise(*row) for row in conn.execute(f"SELECT {_ENTERPRISE_COLUMNS} FROM enterprises")
    ]
    periods = [
        ShutdownPeriod(*row)
        for row in conn.execute(f"SELECT {_PERIOD_COLUMNS} FROM shutdown_periods ORDER BY id")
    ]
    return enterprises, periods


def upsert(conn: sqlite3.Connection, enterprise: Enterprise, actor: str) -> bool:
    """Insert or replace (audited); True if it is new."""
    new = conn.execute("SELECT 1 FROM enterprises WHERE id = ?", (enterprise.id,)).fetchone()
    conn.execute(
        f"INSERT INTO enterprises ({_ENTERPRISE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET name = excluded.name, hours = excluded.hours,"
        " days = excluded.days, timezone = excluded.timezone,"
        " baseline_day_kwh = excluded.baseline_day_kwh,"
        " baseline_load_kw = excluded.baseline_load_kw",
        tuple(asdict(enterprise).values()),
    )
    audit.record(
        conn,
        actor,
        "enterprise.add" if new is None else "enterprise.update",
        enterprise.id,
        asdict(enterprise),
    )
    return new is None


def add_period(conn: sqlite3.Connection, period: ShutdownPeriod, actor: str) -> ShutdownPeriod:
    """Insert (audited); the period's ``id`` is ignored and the new one returned."""
    known = conn.execute("SELECT 1 FROM enterprises WHERE id = ?", (period.enterprise_id,))
    if known.fetchone() is None:
        raise NotFoundError(f"enterprise {period.enterprise_id!r} not found (ewg enterprise set)")
    cursor = conn.execute(
        "INSERT INTO shutdown_periods (enterprise_id, start_ms, end_ms, reason, ordered_by, kind,"
        " created_by, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            period.enterprise_id,
            period.start_ms,
            period.end_ms,
            period.reason,
            period.ordered_by,
            period.kind,
            period.created_by,
            period.created_ms,
        ),
    )
    assert cursor.lastrowid is not None
    stored = replace(period, id=cursor.lastrowid)
    audit.record(conn, actor, f"enterprise.{period.kind}.add", period.enterprise_id, asdict(stored))
    return stored


def end_period(conn: sqlite3.Connection, period_id: int, end_ms: int, actor: str) -> ShutdownPeriod:
    """Move a period's end (lifted early, or extended), audited with the old end."""
    row = conn.execute(
        f"SELECT {_PERIOD_COLUMNS} FROM shutdown_periods WHERE id = ?", (period_id,)
    ).fetchone()
    if row is None:
        raise NotFoundError(f"shutdown period {period_id} not found")
    old = ShutdownPeriod(*row)
    if end_ms <= old.start_ms:
        raise InvalidEnterpriseError("a shutdown period must end after it starts")
    conn.execute("UPDATE shutdown_periods SET end_ms = ? WHERE id = ?", (end_ms, period_id))
    audit.record(
        conn,
        actor,
        f"enterprise.{old.kind}.end",
        old.enterprise_id,
        {"period_id": period_id, "old_end_ms": old.end_ms, "end_ms": end_ms},
    )
    return replace(old, end_ms=end_ms)
