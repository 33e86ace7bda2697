"""The dead-letter store: every rejected message, with its raw bytes and the reason.

Nothing is silently dropped: an electrician can list what their sensor sent and
why it was refused, and a fixed profile can replay it later.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from gateway.model import DeadLetter
from gateway.sqlite import SqliteDatabase

SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_ms INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    payload_size INTEGER NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    device_id TEXT
);
CREATE INDEX IF NOT EXISTS dead_letters_reason ON dead_letters (reason);
CREATE INDEX IF NOT EXISTS dead_letters_device ON dead_letters (device_id);
"""

#: Oversize payloads are kept truncated to this many bytes (the size is recorded).
KEEP_BYTES = 64 * 1024


def _insert(conn: sqlite3.Connection, letters: Sequence[DeadLetter]) -> None:
    conn.executemany(
        "INSERT INTO dead_letters (received_ms, topic, payload, payload_size, reason, detail,"
        " device_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (
                d.received_ms,
                d.topic,
                d.payload[:KEEP_BYTES],
                len(d.payload),
                d.reason,
                d.detail,
                d.device_id,
            )
            for d in letters
        ],
    )


class DeadLetterStore:
    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def write(self, letters: Sequence[DeadLetter]) -> None:
        if letters:
            await self.db.transaction(_insert, letters)

    async def list(
        self,
        *,
        reason: str | None = None,
        device_ids: Sequence[str] | None = None,
        limit: int = 200,
    ) -> list[DeadLetter]:
        sql = "SELECT id, received_ms, topic, payload, reason, detail, device_id FROM dead_letters"
        where, args = [], []
        if reason:
            where.append("reason = ?")
            args.append(reason)
        if device_ids is not None:
            where.append(f"device_id IN ({','.join('?' * len(device_ids))})")
            args.extend(device_ids)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        rows = await self.db.run(lambda c: c.execute(sql, (*args, limit)).fetchall())
        return [DeadLetter(r[1], r[2], bytes(r[3]), r[4], r[5], r[6], r[0]) for r in rows]

    async def counts(self) -> dict[str, int]:
        rows = await self.db.run(
            lambda c: c.execute(
                "SELECT reason, COUNT(*) FROM dead_letters GROUP BY reason"
            ).fetchall()
        )
        return {reason: int(n) for reason, n in rows}
