"""The delivery log and the escalation record, in the gateway's SQLite database.

Three questions must have answers after the fact, and after a restart:

* which escalation chains an alert has had (``escalation_chains``: a new one when its
  severity moves it to another policy, or when a silence ends after steps were skipped)
  and which of their steps have fired (``escalation_steps``), so a restarted gateway
  never tells the fire station twice;
* what each person was sent, over which channel (``notifications``, one row per
  recipient and channel, with the rendered message), and whether it is still pending;
* every attempt and its outcome (``notification_attempts``): "HTTP 500", "errcode
  310000", "timed out" — what a duty officer checks when someone says "I got nothing".

A step and its notifications are written in one transaction: either the step fired and
its deliveries are queued, or neither happened and the next tick tries again.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from alerts.notify.templates import Message
from gateway.sqlite import SqliteDatabase

SCHEMA = """
CREATE TABLE IF NOT EXISTS escalation_chains (
    alert_id INTEGER NOT NULL,
    chain INTEGER NOT NULL,
    policy TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    PRIMARY KEY (alert_id, chain)
);
CREATE TABLE IF NOT EXISTS escalation_steps (
    alert_id INTEGER NOT NULL,
    chain INTEGER NOT NULL,
    step TEXT NOT NULL,
    fired_ms INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    PRIMARY KEY (alert_id, chain, step)
);
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id INTEGER NOT NULL,
    chain INTEGER NOT NULL,
    policy TEXT NOT NULL,
    step TEXT NOT NULL,
    recipient TEXT NOT NULL,
    channel TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    next_attempt_ms INTEGER,
    finished_ms INTEGER,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notifications_by_alert ON notifications (alert_id, id);
CREATE INDEX IF NOT EXISTS notifications_pending ON notifications (status)
    WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS notification_attempts (
    notification_id INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    started_ms INTEGER NOT NULL,
    finished_ms INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (notification_id, attempt)
);
"""


class Status(StrEnum):
    PENDING = "pending"  # queued, or waiting for its next retry
    DELIVERED = "delivered"
    FAILED = "failed"  # every attempt failed: the delivery was given up
    SKIPPED = "skipped"  # not sent: the alert was muted, or the person has no address
    CANCELLED = "cancelled"  # not sent (any more): the alert was acknowledged or closed


FINAL = frozenset({Status.DELIVERED, Status.FAILED, Status.SKIPPED, Status.CANCELLED})


@dataclass(frozen=True, slots=True)
class Attempt:
    number: int
    started_ms: int
    finished_ms: int
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Planned:
    """A notification an escalation step wants: pending, or skipped with a reason."""

    recipient: str
    channel: str
    message: Message
    status: Status = Status.PENDING
    reason: str = ""


@dataclass(slots=True)
class Notification:
    id: int
    alert_id: int
    chain: int
    policy: str
    step: str
    recipient: str
    channel: str
    status: Status
    reason: str
    attempts: int
    created_ms: int
    next_attempt_ms: int | None
    finished_ms: int | None
    message: Message
    attempt_log: list[Attempt] = field(default_factory=list)


_COLUMNS = (
    "id, alert_id, chain, policy, step, recipient, channel, status, reason, attempts,"
    " created_ms, next_attempt_ms, finished_ms, message"
)


def _row(row: sqlite3.Row | tuple[object, ...]) -> Notification:
    (id_, alert_id, chain, policy, step, recipient, channel, status, reason, attempts,
     created, next_ms, finished, message) = row  # fmt: skip
    return Notification(
        id=int(str(id_)),
        alert_id=int(str(alert_id)),
        chain=int(str(chain)),
        policy=str(policy),
        step=str(step),
        recipient=str(recipient),
        channel=str(channel),
        status=Status(str(status)),
        reason=str(reason),
        attempts=int(str(attempts)),
        created_ms=int(str(created)),
        next_attempt_ms=None if next_ms is None else int(str(next_ms)),
        finished_ms=None if finished is None else int(str(finished)),
        message=Message.from_json(json.loads(str(message))),
    )


class NotifyStore:
    """Async access to the escalation and delivery tables (SQLite work runs in its thread)."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def init(self) -> None:
        """Create the tables if missing (idempotent; they may also be in the main schema)."""
        await self._db.run(lambda conn: conn.executescript(SCHEMA))

    # -- escalation ----------------------------------------------------------------------

    async def start_chain(self, alert_id: int, chain: int, policy: str, started_ms: int) -> int:
        """Record that a chain began; return its start as stored (the first one wins)."""

        def run(conn: sqlite3.Connection) -> int:
            conn.execute(
                "INSERT OR IGNORE INTO escalation_chains VALUES (?, ?, ?, ?)",
                (alert_id, chain, policy, started_ms),
            )
            row = conn.execute(
                "SELECT started_ms FROM escalation_chains WHERE alert_id = ? AND chain = ?",
                (alert_id, chain),
            ).fetchone()
            return int(row[0])

        return await self._db.transaction(run)

    async def chains(self) -> dict[int, list[tuple[int, str, int]]]:
        """Every recorded chain: alert id -> [(chain number, policy, started_ms)], in order."""

        def run(conn: sqlite3.Connection) -> dict[int, list[tuple[int, str, int]]]:
            found: dict[int, list[tuple[int, str, int]]] = {}
            for alert_id, chain, policy, started in conn.execute(
                "SELECT alert_id, chain, policy, started_ms FROM escalation_chains"
                " ORDER BY alert_id, chain"
            ):
                found.setdefault(int(alert_id), []).append((int(chain), str(policy), int(started)))
            return found

        return await self._db.run(run)

    async def fired_steps(self) -> dict[tuple[int, int], dict[str, str]]:
        """(alert id, chain number) -> {step: outcome} of the steps already fired."""

        def run(conn: sqlite3.Connection) -> dict[tuple[int, int], dict[str, str]]:
            found: dict[tuple[int, int], dict[str, str]] = {}
            for alert_id, chain, step, outcome in conn.execute(
                "SELECT alert_id, chain, step, outcome FROM escalation_steps"
            ):
                found.setdefault((int(alert_id), int(chain)), {})[str(step)] = str(outcome)
            return found

        return await self._db.run(run)

    async def fire_step(
        self,
        alert_id: int,
        policy: str,
        step: str,
        now_ms: int,
        planned: Sequence[Planned],
        *,
        chain: int = 1,
        outcome: str = "fired",
    ) -> list[Notification] | None:
        """Record a fired step and its notifications at once; None if it had already fired.

        ``outcome`` is "fired", or "muted" for a step that came due while the alert was
        silenced or suppressed (its notifications are then all skipped).
        """

        def run(conn: sqlite3.Connection) -> list[Notification] | None:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO escalation_steps VALUES (?, ?, ?, ?, ?)",
                (alert_id, chain, step, now_ms, outcome),
            )
            if cursor.rowcount == 0:
                return None
            made: list[Notification] = []
            for p in planned:
                final = p.status in FINAL
                row = conn.execute(
                    f"INSERT INTO notifications ({_COLUMNS.partition(', ')[2]})"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?) RETURNING " + _COLUMNS,
                    (
                        alert_id,
                        chain,
                        policy,
                        step,
                        p.recipient,
                        p.channel,
                        p.status.value,
                        p.reason,
                        now_ms,
                        None if final else now_ms,
                        now_ms if final else None,
                        json.dumps(p.message.to_json(), ensure_ascii=False),
                    ),
                ).fetchone()
                made.append(_row(row))
            return made

        return await self._db.transaction(run)

    # -- deliveries ----------------------------------------------------------------------

    async def pending(self) -> list[Notification]:
        """Notifications not yet delivered, failed for good, skipped or cancelled."""

        def run(conn: sqlite3.Connection) -> list[Notification]:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM notifications WHERE status = 'pending' ORDER BY id"
            ).fetchall()
            return [_row(r) for r in rows]

        return await self._db.run(run)

    async def record_attempt(
        self,
        notification_id: int,
        attempt: Attempt,
        status: Status,
        reason: str,
        next_attempt_ms: int | None,
    ) -> None:
        """One attempt and where the notification stands after it."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO notification_attempts VALUES (?, ?, ?, ?, ?, ?)",
                (
                    notification_id,
                    attempt.number,
                    attempt.started_ms,
                    attempt.finished_ms,
                    int(attempt.ok),
                    attempt.detail,
                ),
            )
            conn.execute(
                "UPDATE notifications SET status = ?, reason = ?, attempts = ?,"
                " next_attempt_ms = ?, finished_ms = ? WHERE id = ?",
                (
                    status.value,
                    reason,
                    attempt.number,
                    next_attempt_ms,
                    attempt.finished_ms if status in FINAL else None,
                    notification_id,
                ),
            )

        await self._db.transaction(run)

    async def finish(self, notification_id: int, status: Status, reason: str, now_ms: int) -> None:
        """Close a pending notification without sending it (cancelled or skipped)."""
        await self._db.run(
            lambda conn: conn.execute(
                "UPDATE notifications SET status = ?, reason = ?, next_attempt_ms = NULL,"
                " finished_ms = ? WHERE id = ? AND status = 'pending'",
                (status.value, reason, now_ms, notification_id),
            )
        )

    async def for_alert(self, alert_id: int) -> list[Notification]:
        """Every notification of one alert with its attempts, in the order they were made."""
        return await self._select("WHERE alert_id = ? ORDER BY id", (alert_id,))

    async def recent(self, status: Status | None = None, limit: int = 100) -> list[Notification]:
        """The newest notifications (optionally of one status), newest first."""
        if status is None:
            return await self._select("ORDER BY id DESC LIMIT ?", (limit,))
        return await self._select(
            "WHERE status = ? ORDER BY id DESC LIMIT ?", (status.value, limit)
        )

    async def _select(self, where: str, args: tuple[object, ...]) -> list[Notification]:
        def run(conn: sqlite3.Connection) -> list[Notification]:
            found = [
                _row(r) for r in conn.execute(f"SELECT {_COLUMNS} FROM notifications {where}", args)
            ]
            if not found:
                return found
            by_id = {n.id: n for n in found}
            marks = ",".join("?" * len(by_id))
            for nid, number, started, finished, ok, detail in conn.execute(
                "SELECT notification_id, attempt, started_ms, finished_ms, ok, detail"
                f" FROM notification_attempts WHERE notification_id IN ({marks})"
                " ORDER BY notification_id, attempt",
                tuple(by_id),
            ):
                by_id[int(nid)].attempt_log.append(
                    Attempt(int(number), int(started), int(finished), bool(ok), str(detail))
                )
            return found

        return await self._db.run(run)
