"""The embedded time-series store: one SQLite file, batched, idempotent.

A demo or a small town needs nothing else. The primary key (device, metric, ts)
with ``INSERT OR IGNORE`` is what makes a redelivered or replayed reading a no-op.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from gateway.model import DeviceEvent, Reading
from gateway.sqlite import SqliteDatabase

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    device_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    value REAL NOT NULL,
    ts_assumed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, metric, ts_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    device_id TEXT NOT NULL,
    type TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    detail TEXT NOT NULL,
    ts_assumed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, type, ts_ms)
) WITHOUT ROWID;
"""


def _write(
    conn: sqlite3.Connection, readings: Sequence[Reading], events: Sequence[DeviceEvent]
) -> int:
    before = conn.total_changes
    conn.executemany(
        "INSERT OR IGNORE INTO readings VALUES (?, ?, ?, ?, ?)",
        [(r.device_id, r.metric, r.ts_ms, r.value, int(r.ts_assumed)) for r in readings],
    )
    new_readings = conn.total_changes - before
    conn.executemany(
        "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?)",
        [
            (
                e.device_id,
                e.type,
                e.ts_ms,
                json.dumps(e.detail, ensure_ascii=False),
                int(e.ts_assumed),
            )
            for e in events
        ],
    )
    return new_readings


class SqliteStore:
    def __init__(self, path: Path | str) -> None:
        self.db = SqliteDatabase(path, SCHEMA)

    async def open(self) -> SqliteStore:
        await self.db.__aenter__()
        return self

    async def close(self) -> None:
        await self.db.close()

    async def write(self, readings: Sequence[Reading], events: Sequence[DeviceEvent]) -> int:
        if not readings and not events:
            return 0
        return await self.db.transaction(_write, readings, events)

    async def query(
        self, device_id: str, metric: str, start_ms: int, end_ms: int, limit: int = 10_000
    ) -> list[Reading]:
        rows = await self.db.run(
            lambda c: c.execute(
                "SELECT ts_ms, value, ts_assumed FROM readings WHERE device_id = ? AND metric = ?"
                " AND ts_ms BETWEEN ? AND ? ORDER BY ts_ms LIMIT ?",
                (device_id, metric, start_ms, end_ms, limit),
            ).fetchall()
        )
        return [Reading(device_id, metric, ts, value, bool(a)) for ts, value, a in rows]

    async def latest(self, device_id: str) -> dict[str, Reading]:
        rows = await self.db.run(
            lambda c: c.execute(
                "SELECT metric, MAX(ts_ms), value, ts_assumed FROM readings"
                " WHERE device_id = ? GROUP BY metric",
                (device_id,),
            ).fetchall()
        )
        return {m: Reading(device_id, m, ts, v, bool(a)) for m, ts, v, a in rows}

    async def events(self, device_id: str, start_ms: int, end_ms: int) -> list[DeviceEvent]:
        rows = await self.db.run(
            lambda c: c.execute(
                "SELECT type, ts_ms, detail, ts_assumed FROM events WHERE device_id = ?"
                " AND ts_ms BETWEEN ? AND ? ORDER BY ts_ms",
                (device_id, start_ms, end_ms),
            ).fetchall()
        )
        return [DeviceEvent(device_id, t, ts, json.loads(d), bool(a)) for t, ts, d, a in rows]

    async def count(self) -> int:
        row = await self.db.run(lambda c: c.execute("SELECT COUNT(*) FROM readings").fetchone())
        return int(row[0])
