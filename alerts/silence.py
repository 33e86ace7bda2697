"""Silences: "expect noise here until T", set by a person, ending by itself.

An electrician testing a workshop's electrical fire monitor, a contractor replacing
smoke alarms in a rental house, a panel being serviced: each produces alerts that
are real signals but no emergency. A silence matches alerts by site, device, rule
and/or alert class (every given matcher must match) between ``starts_at`` and
``ends_at``. Matching alerts are still raised, stored and shown, with
``silenced_by`` set, so nothing disappears; only paging holds off.

A silence ends by itself at ``ends_at``: evaluated against the clock, never by a
person remembering to switch it off. Ending it early (``DELETE``) sets
``ends_at`` to now. Silences are never deleted from the database, and every
change is written to the audit log in the same transaction, with who and when.

:class:`Silences` is a :class:`~alerts.mute.Muter`; the engine asks it about every
alert it raises or changes, and again whenever a silence starts or ends.
"""

from __future__ import annotations

import builtins
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from alerts.model import Alert, AlertClass
from alerts.mute import MuteKind
from alerts.options import DAY_MS, AlertOptions
from gateway import audit
from gateway.errors import ConflictError, NotFoundError
from gateway.model import now_ms
from gateway.sqlite import SqliteDatabase

#: DDL for silences; part of :data:`alerts.store.SCHEMA`. Silences are never deleted.
SILENCE_SCHEMA = """
CREATE TABLE IF NOT EXISTS silences (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id     TEXT,
    device_id   TEXT,
    rule        TEXT,
    alert_class TEXT,
    starts_at   INTEGER NOT NULL,
    ends_at     INTEGER NOT NULL,
    reason      TEXT    NOT NULL,
    created_by  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    ended_by    TEXT
);
CREATE INDEX IF NOT EXISTS silences_ends_at ON silences (ends_at);
"""

DEFAULT_LIST_LIMIT = 500


class SilenceState(StrEnum):
    PENDING = "pending"  # starts later
    ACTIVE = "active"
    EXPIRED = "expired"  # ended by itself or ended early


@dataclass(frozen=True, slots=True)
class Matchers:
    """Which alerts a silence covers: every matcher given must match; None matches all.

    >>> from alerts.model import AlertState, Severity
    >>> a = Alert(1, "smk-1", "shop-17", "smoke_alarm", Severity.RED, AlertClass.HAZARD,
    ...           "fire", AlertState.RAISED, 0, 0, None)
    >>> Matchers(site_id="shop-17").matches(a), Matchers(site_id="shop-17", rule="x").matches(a)
    (True, False)
    """

    site_id: str | None = None
    device_id: str | None = None
    rule: str | None = None
    alert_class: AlertClass | None = None

    @property
    def is_empty(self) -> bool:
        return all(v is None for v in (self.site_id, self.device_id, self.rule, self.alert_class))

    def matches(self, alert: Alert) -> bool:
        return (
            (self.site_id is None or alert.site_id == self.site_id)
            and (self.device_id is None or alert.device_id == self.device_id)
            and (self.rule is None or alert.rule == self.rule)
            and (self.alert_class is None or alert.alert_class == self.alert_class)
        )


@dataclass(frozen=True, slots=True)
class Silence:
    id: int
    matchers: Matchers
    starts_at: int
    #: When it ends (or ended): set to the moment it was ended early, if it was.
    ends_at: int
    reason: str
    created_by: str
    created_at: int
    #: Who ended it before its planned end; None if it ran (or runs) its course.
    ended_by: str | None = None

    def state(self, now_ms: int) -> SilenceState:
        """Pending before ``starts_at``, active from it, expired from ``ends_at``."""
        if now_ms >= self.ends_at:
            return SilenceState.EXPIRED
        if now_ms < self.starts_at:
            return SilenceState.PENDING
        return SilenceState.ACTIVE

    def mutes(self, alert: Alert, now_ms: int) -> bool:
        return self.starts_at <= now_ms < self.ends_at and self.matchers.matches(alert)


class Silences:
    """The silences, persisted and audited; the not-yet-expired ones are held in memory.

    Create and expire are the only changes. After either, the engine must be told
    to re-ask about its open alerts (``await engine.remute()``): a silence set now
    also covers alerts already open, and ending one unmutes them at once. A silence
    starting or ending on schedule needs nothing: the engine's timer notices it
    through :meth:`next_change_ms`.
    """

    def __init__(
        self,
        db: SqliteDatabase,
        clock: Callable[[], int] = now_ms,
        options: AlertOptions | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._options = options or AlertOptions()
        self._live: dict[int, Silence] = {}  # pending or active, by id

    @property
    def kind(self) -> MuteKind:
        return MuteKind.SILENCE

    async def load(self) -> None:
        """Hold every silence that has not yet ended (on start)."""
        now = self._clock()
        rows = await self._db.run(_select, "WHERE ends_at > ? ORDER BY id", [now])
        self._live = {s.id: s for s in rows}

    # -- Muter -----------------------------------------------------------------

    def mutes(self, alert: Alert, now_ms: int) -> int | None:
        """The silence covering ``alert`` now: the one it already had if still valid,
        else the oldest matching one."""
        if alert.silenced_by is not None:
            kept = self._live.get(alert.silenced_by)
            if kept is not None and kept.mutes(alert, now_ms):
                return kept.id
        for silence in self._live.values():  # in id order: loaded and created so
            if silence.mutes(alert, now_ms):
                return silence.id
        return None

    def dependents(self, changed: Alert) -> Iterable[int]:
        return ()  # a silence does not depend on other alerts

    def next_change_ms(self, after_ms: int) -> int | None:
        # The engine has already re-judged its alerts for every boundary up to after_ms,
        # so a silence that ended by then may be let go.
        self._prune(after_ms)
        upcoming = [
            t for s in self._live.values() for t in (s.starts_at, s.ends_at) if t > after_ms
        ]
        return min(upcoming, default=None)

    # -- changes ---------------------------------------------------------------

    async def create(
        self,
        matchers: Matchers,
        *,
        ends_at: int,
        reason: str,
        actor: str,
        starts_at: int | None = None,
    ) -> Silence:
        """Store and audit a new silence; ValueError (with a message fit for a person)
        if it would mute everything, never apply, or last too long."""
        now = self._clock()
        start = now if starts_at is None else starts_at
        reason = reason.strip()
        if not actor.strip():
            raise ValueError("actor must not be empty")
        if matchers.is_empty:
            raise ValueError(
                "a silence needs at least one matcher (site_id, device_id, rule or "
                "alert_class); one without would mute every alert in the town"
            )
        if not reason:
            raise ValueError("reason must not be empty: the next shift needs to know why")
        if ends_at <= start:
            raise ValueError("ends_at must be after starts_at")
        if ends_at <= now:
            raise ValueError("ends_at is in the past: the silence would never apply")
        longest = self._options.max_silence_ms
        if ends_at - start > longest:
            raise ValueError(f"a silence may last at most {_duration(longest)}")
        draft = Silence(0, matchers, start, ends_at, reason, actor, now)
        silence = await self._db.transaction(_insert, draft)
        self._live[silence.id] = silence
        return silence

    async def expire(self, silence_id: int, actor: str) -> Silence:
        """End a silence now (the API's DELETE); the record and its audit lines stay.

        NotFoundError if there is no such silence, ConflictError if it already ended.
        """
        if not actor.strip():
            raise ValueError("actor must not be empty")
        now = self._clock()
        ended = await self._db.transaction(_expire, silence_id, now, actor)
        self._live.pop(silence_id, None)
        return ended

    # -- reads -----------------------------------------------------------------

    async def get(self, silence_id: int) -> Silence:
        found = await self._db.run(_select, "WHERE id = ?", [silence_id])
        if not found:
            raise NotFoundError(f"silence {silence_id} does not exist")
        return found[0]

    async def list(
        self,
        *,
        state: SilenceState | None = None,
        site_id: str | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
    ) -> builtins.list[Silence]:
        """Silences newest first, optionally only those in ``state`` now or for one site."""
        now = self._clock()
        where: builtins.list[str] = []
        params: builtins.list[Any] = []
        if state is SilenceState.EXPIRED:
            where.append("ends_at <= ?")
            params.append(now)
        elif state is SilenceState.ACTIVE:
            where.append("starts_at <= ? AND ends_at > ?")
            params.extend([now, now])
        elif state is SilenceState.PENDING:
            where.append("starts_at > ? AND ends_at > ?")
            params.extend([now, now])
        if site_id is not None:
            where.append("site_id = ?")
            params.append(site_id)
        clause = ("WHERE " + " AND ".join(where) + " ") if where else ""
        params.append(limit)
        return await self._db.run(_select, clause + "ORDER BY id DESC LIMIT ?", params)

    def now(self) -> int:
        """The clock silences are judged by (the API shows each silence's state with it)."""
        return self._clock()

    def _prune(self, upto_ms: int) -> None:
        for silence in [s for s in self._live.values() if s.ends_at <= upto_ms]:
            del self._live[silence.id]


def _duration(ms: int) -> str:
    if ms % DAY_MS == 0:
        return f"{ms // DAY_MS} days"
    return f"{ms / 3_600_000:g} hours"


# -- SQL -------------------------------------------------------------------------

_COLUMNS = (
    "id, site_id, device_id, rule, alert_class, starts_at, ends_at, reason, "
    "created_by, created_at, ended_by"
)


def _row(row: Sequence[Any]) -> Silence:
    return Silence(
        id=row[0],
        matchers=Matchers(
            site_id=row[1],
            device_id=row[2],
            rule=row[3],
            alert_class=None if row[4] is None else AlertClass(row[4]),
        ),
        starts_at=row[5],
        ends_at=row[6],
        reason=row[7],
        created_by=row[8],
        created_at=row[9],
        ended_by=row[10],
    )


def _select(conn: sqlite3.Connection, clause: str, params: Sequence[Any]) -> list[Silence]:
    return [_row(r) for r in conn.execute(f"SELECT {_COLUMNS} FROM silences {clause}", params)]


def _detail(s: Silence) -> dict[str, Any]:
    return {
        "matchers": {k: v for k, v in asdict(s.matchers).items() if v is not None},
        "starts_at": s.starts_at,
        "ends_at": s.ends_at,
        "reason": s.reason,
    }


def _insert(conn: sqlite3.Connection, s: Silence) -> Silence:
    m = s.matchers
    cur = conn.execute(
        f"INSERT INTO silences ({_COLUMNS.removeprefix('id, ')}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            m.site_id,
            m.device_id,
            m.rule,
            m.alert_class,
            s.starts_at,
            s.ends_at,
            s.reason,
            s.created_by,
            s.created_at,
            s.ended_by,
        ),
    )
    assert cur.lastrowid is not None  # an INSERT into a rowid table always sets it
    stored = Silence(
        cur.lastrowid, m, s.starts_at, s.ends_at, s.reason, s.created_by, s.created_at
    )
    audit.record(conn, s.created_by, "silence.create", f"silence:{stored.id}", _detail(stored))
    return stored


def _expire(conn: sqlite3.Connection, silence_id: int, now: int, actor: str) -> Silence:
    found = _select(conn, "WHERE id = ?", [silence_id])
    if not found:
        raise NotFoundError(f"silence {silence_id} does not exist")
    current = found[0]
    if now >= current.ends_at:
        raise ConflictError(f"silence {silence_id} has already ended")
    conn.execute(
        "UPDATE silences SET ends_at = ?, ended_by = ? WHERE id = ?", (now, actor, silence_id)
    )
    audit.record(
        conn,
        actor,
        "silence.expire",
        f"silence:{silence_id}",
        {**_detail(current), "ends_at": now, "planned_ends_at": current.ends_at},
    )
    return Silence(
        current.id,
        current.matchers,
        current.starts_at,
        now,
        current.reason,
        current.created_by,
        current.created_at,
        ended_by=actor,
    )
