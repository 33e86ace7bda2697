"""The store-and-forward spool: batches the time-series store could not take, kept on disk.

Why it exists: the gateway acknowledges an MQTT message only once what it carried
is durable. With a remote store (InfluxDB, VictoriaMetrics) "durable" cannot mean
"in the store" alone, or a store outage would stop acknowledging, the broker's
in-flight window would fill and ingestion -- and with it alerting -- would stall.
So a batch the store refuses (or is too slow to take) is appended here, durably,
and only then acknowledged; a background task replays the spool into the store,
oldest batch first, once it is back (see :mod:`gateway.persist`).

Format: one SQLite file (``data_dir/spool.db``), one row per batch, the readings
and events JSON-encoded and zlib-compressed. SQLite gives atomic appends and
removes and crash recovery for free; the file is opened with
``synchronous=FULL`` so an appended batch survives not just a crash of the
gateway but a power cut as well, since its messages are acknowledged right after.
Every call runs on the database's own thread (:class:`~gateway.sqlite.SqliteDatabase`),
including encoding and decoding, so the event loop never waits on disk or zlib.

Replay is at-least-once: a batch is removed only after the store took it, so a
crash between the two replays it again; the store's idempotent writes (same
device, metric and timestamp) make that harmless.

Full policy (``spool_max_bytes``): when appending a batch would take the spool
past its limit, :meth:`Spool.append` raises :class:`SpoolFull` and stores
nothing. The persist stage then *stops acknowledging*: it keeps the batch in
memory, waits for the replay to make room (or the store to come back) and tries
again; meanwhile the broker keeps every unacknowledged message and, once its
in-flight window is full, stops sending -- back-pressure, nothing is lost or
dropped. Each batch held back this way is counted (``spool.full_events``) and
``/api/health`` is degraded with the reason while it lasts. The limit counts the
encoded batches (about 13 bytes a reading, measured on simulated telemetry), not
the file: SQLite reuses the pages of replayed batches, so the file stays about as
large as the largest backlog it held, plus a write-ahead log of a few MB.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import EwgError
from gateway.model import DeviceEvent, Reading, now_ms
from gateway.sqlite import SqliteDatabase

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_ms INTEGER NOT NULL,
    readings INTEGER NOT NULL,
    events INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    body BLOB NOT NULL
);
"""


class SpoolFull(EwgError):
    """Appending would exceed ``max_bytes``; nothing was stored (the caller keeps the batch)."""


@dataclass(frozen=True, slots=True)
class SpooledBatch:
    """One batch as it was appended, with its place in the spool."""

    id: int
    created_ms: int
    readings: list[Reading]
    events: list[DeviceEvent]


@dataclass(frozen=True, slots=True)
class _Totals:
    batches: int
    readings: int
    events: int
    bytes: int
    oldest_ms: int | None


def encode_batch(readings: Sequence[Reading], events: Sequence[DeviceEvent]) -> bytes:
    """A batch as it is kept on disk: compact JSON, zlib level 1 (cheap, ~4x smaller)."""
    body = {
        "r": [[r.device_id, r.metric, r.ts_ms, r.value, r.ts_assumed] for r in readings],
        "e": [[e.device_id, e.type, e.ts_ms, e.detail, e.ts_assumed] for e in events],
    }
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return zlib.compress(text.encode("utf-8"), 1)


def decode_batch(blob: bytes) -> tuple[list[Reading], list[DeviceEvent]]:
    body = json.loads(zlib.decompress(blob))
    readings = [Reading(d, m, int(ts), float(v), bool(a)) for d, m, ts, v, a in body["r"]]
    events = [DeviceEvent(d, t, int(ts), dict(x), bool(a)) for d, t, ts, x, a in body["e"]]
    return readings, events


def _totals(conn: sqlite3.Connection) -> _Totals:
    row = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(readings), 0), COALESCE(SUM(events), 0),"
        " COALESCE(SUM(bytes), 0), MIN(created_ms) FROM batches"
    ).fetchone()
    return _Totals(int(row[0]), int(row[1]), int(row[2]), int(row[3]), row[4])


class Spool:
    """A durable FIFO of batches on one SQLite file, bounded by ``max_bytes``.

    The running totals (:attr:`batches`, :attr:`readings`, :attr:`bytes`, ...) are
    kept in memory, loaded once on :meth:`open`, so health checks cost nothing.
    """

    def __init__(self, path: Path | str, max_bytes: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.db = SqliteDatabase(self.path, SCHEMA)
        self._totals = _Totals(0, 0, 0, 0, None)
        # One operation at a time, so the in-memory totals always match the file.
        self._lock = asyncio.Lock()

    async def open(self) -> Spool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await self.db.__aenter__()
        # Appended batches are acknowledged to the broker right after: make them power-safe.
        await self.db.run(lambda c: c.execute("PRAGMA synchronous=FULL"))
        self._totals = await self.db.run(_totals)
        return self

    async def close(self) -> None:
        await self.db.close()

    @property
    def batches(self) -> int:
        return self._totals.batches

    @property
    def readings(self) -> int:
        return self._totals.readings

    @property
    def events(self) -> int:
        return self._totals.events

    @property
    def bytes(self) -> int:
        """Size of the encoded batches (what ``max_bytes`` limits), not of the file."""
        return self._totals.bytes

    @property
    def oldest_ms(self) -> int | None:
        """When the oldest batch still waiting was appended (None when empty)."""
        return self._totals.oldest_ms

    @property
    def empty(self) -> bool:
        return self._totals.batches == 0

    async def append(self, readings: Sequence[Reading], events: Sequence[DeviceEvent]) -> int:
        """Append one batch durably and return its id; raise :class:`SpoolFull` if it won't fit."""
        async with self._lock:
            room = self.max_bytes - self._totals.bytes
            created = now_ms()

            def insert(conn: sqlite3.Connection) -> tuple[int, int]:
                blob = encode_batch(readings, events)
                if len(blob) > room:
                    raise SpoolFull(
                        f"a {len(blob)}-byte batch does not fit in the {room} bytes"
                        f" left of {self.max_bytes}"
                    )
                cur = conn.execute(
                    "INSERT INTO batches (created_ms, readings, events, bytes, body)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (created, len(readings), len(events), len(blob), blob),
                )
                return int(cur.lastrowid or 0), len(blob)

            batch_id, size = await self.db.transaction(insert)
            t = self._totals
            self._totals = _Totals(
                t.batches + 1,
                t.readings + len(readings),
                t.events + len(events),
                t.bytes + size,
                created if t.oldest_ms is None else t.oldest_ms,
            )
            return batch_id

    async def peek(self, max_readings: int) -> list[SpooledBatch]:
        """The oldest batches, in order, up to about ``max_readings`` (always at least one)."""

        def read(conn: sqlite3.Connection) -> list[SpooledBatch]:
            found: list[SpooledBatch] = []
            total = 0
            for batch_id, created, n, body in conn.execute(
                "SELECT id, created_ms, readings, body FROM batches ORDER BY id"
            ):
                if found and total + n > max_readings:
                    break
                readings, events = decode_batch(body)
                found.append(SpooledBatch(batch_id, created, readings, events))
                total += n
            return found

        async with self._lock:
            return await self.db.run(read)

    async def remove(self, upto_id: int) -> None:
        """Drop every batch up to and including ``upto_id`` (after the store took them)."""

        def delete(conn: sqlite3.Connection) -> tuple[int, int, int, int, int | None]:
            # Both lookups walk the primary key: the cost is the batches removed, not kept.
            gone = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(readings), 0), COALESCE(SUM(events), 0),"
                " COALESCE(SUM(bytes), 0) FROM batches WHERE id <= ?",
                (upto_id,),
            ).fetchone()
            conn.execute("DELETE FROM batches WHERE id <= ?", (upto_id,))
            first = conn.execute("SELECT created_ms FROM batches ORDER BY id LIMIT 1").fetchone()
            return (
                int(gone[0]),
                int(gone[1]),
                int(gone[2]),
                int(gone[3]),
                (None if first is None else int(first[0])),
            )

        async with self._lock:
            batches, readings, events, size, oldest = await self.db.transaction(delete)
            t = self._totals
            self._totals = _Totals(
                t.batches - batches,
                t.readings - readings,
                t.events - events,
                t.bytes - size,
                oldest,
            )
