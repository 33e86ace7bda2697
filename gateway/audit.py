"""The audit log of operator actions: append-only, never edited through EWG.

A trigger refuses UPDATE and DELETE at the database level, so not even a bug in
EWG can rewrite who did what.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from gateway.model import now_ms
from gateway.sqlite import SqliteDatabase

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
-- INSERT OR REPLACE on an existing id deletes the old entry without firing the DELETE
-- trigger (SQLite runs it for REPLACE only with recursive_triggers on): refuse it here.
CREATE TRIGGER IF NOT EXISTS audit_log_no_replace BEFORE INSERT ON audit_log
WHEN EXISTS (SELECT 1 FROM audit_log WHERE id = NEW.id)
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    ts_ms: int
    actor: str
    action: str
    target: str
    detail: dict[str, Any]


def record(
    conn: sqlite3.Connection,
    actor: str,
    action: str,
    target: str,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one entry; call inside the transaction that made the change."""
    conn.execute(
        "INSERT INTO audit_log (ts_ms, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
        (now_ms(), actor, action, target, json.dumps(detail or {}, ensure_ascii=False)),
    )


class AuditLog:
    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def record(
        self, actor: str, action: str, target: str, detail: dict[str, Any] | None = None
    ) -> None:
        await self.db.run(record, actor, action, target, detail)

    async def entries(self, limit: int = 200) -> list[AuditEntry]:
        rows = await self.db.run(
            lambda c: c.execute(
                "SELECT id, ts_ms, actor, action, target, detail FROM audit_log"
                " ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        )
        return [AuditEntry(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]
