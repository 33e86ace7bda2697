"""Alerts and their history in SQLite, so nothing a duty officer saw silently disappears.

The store is deliberately dumb: it persists what the engine decided and answers
queries. Every call goes through :class:`~gateway.sqlite.SqliteDatabase`, so the
event loop never waits on disk. Where an alert and its history line change
together they are written in one transaction (:meth:`AlertStore.save`,
:meth:`AlertStore.insert`): an alert whose state moved without a matching
history line would break the "who did what, when" audit the office reports on.
The same goes for an alert and its incident (:meth:`AlertStore.write`): an
incident is never stored without the alert that opened it.

The schema also holds the incident and silence tables (each defined beside its
concept, in :mod:`alerts.incidents` and :mod:`alerts.silence`) and the audit log
that silences write to, so the alert engine's part of the database is one string.
Columns added to ``alerts`` after the first release are added to an older file
by :meth:`AlertStore.prepare` (``CREATE TABLE IF NOT EXISTS`` leaves an existing
table as it was).
"""

from __future__ import annotations

import builtins
import dataclasses
import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

from alerts import incidents as incident_sql
from alerts.incidents import INCIDENT_SCHEMA, Incident
from alerts.model import Alert, AlertClass, AlertState, Disposition, Severity, Transition
from alerts.silence import SILENCE_SCHEMA
from gateway import audit
from gateway.errors import NotFoundError
from gateway.sqlite import SqliteDatabase

#: DDL for the alert tables. Idempotent (``IF NOT EXISTS``) because SqliteDatabase runs
#: it on every open, and self-contained so it can be concatenated with other stores'
#: schemas into the one database file.
_ALERT_TABLES = """
CREATE TABLE IF NOT EXISTS alerts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id       TEXT    NOT NULL,
    site_id         TEXT    NOT NULL,
    rule            TEXT    NOT NULL,
    severity        TEXT    NOT NULL,
    alert_class     TEXT    NOT NULL,
    hazard          TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    raised_at       INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    value           REAL,
    message         TEXT    NOT NULL DEFAULT '',
    count           INTEGER NOT NULL DEFAULT 1,
    acknowledged    INTEGER NOT NULL DEFAULT 0,
    acknowledged_by TEXT,
    acknowledged_at INTEGER,
    cleared_at      INTEGER,
    closed_at       INTEGER,
    closed_by       TEXT,
    disposition     TEXT,
    note            TEXT    NOT NULL DEFAULT '',
    incident_id     INTEGER REFERENCES incidents (id),
    silenced_by     INTEGER,
    suppressed_by   INTEGER,
    flapping        INTEGER NOT NULL DEFAULT 0,
    flap_active     INTEGER,
    flap_changed_at INTEGER,
    owner_acknowledged_by TEXT,
    owner_acknowledged_at INTEGER
);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts (state);
CREATE INDEX IF NOT EXISTS alerts_device_rule ON alerts (device_id, rule);
CREATE INDEX IF NOT EXISTS alerts_site ON alerts (site_id);
CREATE INDEX IF NOT EXISTS alerts_raised_at ON alerts (raised_at);

CREATE TABLE IF NOT EXISTS alert_history (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id   INTEGER NOT NULL REFERENCES alerts (id),
    ts_ms      INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    from_state TEXT,
    to_state   TEXT    NOT NULL,
    note       TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS alert_history_alert ON alert_history (alert_id);
"""

SCHEMA = _ALERT_TABLES + INCIDENT_SCHEMA + SILENCE_SCHEMA + audit.SCHEMA

#: The name the lead concatenates with other stores' schemas.
ALERT_SCHEMA = SCHEMA

#: Columns added to ``alerts`` since the first release, as ``ALTER TABLE`` declares
#: them (in field order, so an upgraded table matches a new one column for column).
_ADDED_COLUMNS = {
    "incident_id": "INTEGER REFERENCES incidents (id)",
    "silenced_by": "INTEGER",
    "suppressed_by": "INTEGER",
    "flapping": "INTEGER NOT NULL DEFAULT 0",
    "flap_active": "INTEGER",
    "flap_changed_at": "INTEGER",
    "owner_acknowledged_by": "TEXT",
    "owner_acknowledged_at": "INTEGER",
}

DEFAULT_LIST_LIMIT = 500

# Column order is the dataclass field order, so a field added to Alert without a
# column fails loudly (tests compare the table against dataclasses.fields(Alert)).
_ALERT_COLUMNS = tuple(f.name for f in dataclasses.fields(Alert))
_ALERT_DATA_COLUMNS = tuple(c for c in _ALERT_COLUMNS if c != "id")
_SELECT_ALERT = f"SELECT {', '.join(_ALERT_COLUMNS)} FROM alerts"
_INSERT_ALERT = (
    f"INSERT INTO alerts ({', '.join(_ALERT_DATA_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _ALERT_DATA_COLUMNS)})"
)
_UPDATE_ALERT = (
    f"UPDATE alerts SET {', '.join(f'{c} = ?' for c in _ALERT_DATA_COLUMNS)} WHERE id = ?"
)
_INSERT_TRANSITION = (
    "INSERT INTO alert_history (alert_id, ts_ms, actor, from_state, to_state, note) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)


def _alert_params(alert: Alert) -> list[Any]:
    """The alert's non-id fields as SQL parameters (enums as their string values)."""
    return [getattr(alert, c) for c in _ALERT_DATA_COLUMNS]


def _row_to_alert(row: Sequence[Any]) -> Alert:
    values = dict(zip(_ALERT_COLUMNS, row, strict=True))
    values["severity"] = Severity(values["severity"])
    values["alert_class"] = AlertClass(values["alert_class"])
    values["state"] = AlertState(values["state"])
    values["acknowledged"] = bool(values["acknowledged"])
    values["flapping"] = bool(values["flapping"])
    if values["flap_active"] is not None:
        values["flap_active"] = bool(values["flap_active"])
    if values["disposition"] is not None:
        values["disposition"] = Disposition(values["disposition"])
    return Alert(**values)


def _row_to_transition(row: Sequence[Any]) -> Transition:
    alert_id, ts_ms, actor, from_state, to_state, note = row
    return Transition(
        alert_id=alert_id,
        ts_ms=ts_ms,
        actor=actor,
        from_state=None if from_state is None else AlertState(from_state),
        to_state=AlertState(to_state),
        note=note,
    )


def _transition_params(t: Transition) -> tuple[Any, ...]:
    return (t.alert_id, t.ts_ms, t.actor, t.from_state, t.to_state, t.note)


def _exists(conn: sqlite3.Connection, alert_id: int) -> bool:
    return conn.execute("SELECT 1 FROM alerts WHERE id = ?", (alert_id,)).fetchone() is not None


def _insert(conn: sqlite3.Connection, alert: Alert, actor: str, note: str) -> Alert:
    cur = conn.execute(_INSERT_ALERT, _alert_params(alert))
    new_id = cur.lastrowid
    assert new_id is not None  # an INSERT into a rowid table always sets it
    stored = dataclasses.replace(alert, id=new_id)
    first = Transition(new_id, alert.raised_at, actor, None, alert.state, note)
    conn.execute(_INSERT_TRANSITION, _transition_params(first))
    return stored


def _update(conn: sqlite3.Connection, alert: Alert) -> None:
    cur = conn.execute(_UPDATE_ALERT, [*_alert_params(alert), alert.id])
    if cur.rowcount == 0:
        raise NotFoundError(f"alert {alert.id} does not exist")


def _add_transition(conn: sqlite3.Connection, t: Transition) -> None:
    # Checked here rather than left to the foreign key so the caller gets
    # NotFoundError, not a StoreError wrapping an IntegrityError.
    if not _exists(conn, t.alert_id):
        raise NotFoundError(f"alert {t.alert_id} does not exist")
    conn.execute(_INSERT_TRANSITION, _transition_params(t))


def _save(conn: sqlite3.Connection, alert: Alert, t: Transition) -> None:
    if t.alert_id != alert.id:
        raise ValueError(f"transition is for alert {t.alert_id}, not alert {alert.id}")
    _update(conn, alert)
    conn.execute(_INSERT_TRANSITION, _transition_params(t))


def _prepare(conn: sqlite3.Connection) -> None:
    have = {row[1] for row in conn.execute("PRAGMA table_info(alerts)")}
    for name, declaration in _ADDED_COLUMNS.items():
        if name not in have:
            conn.execute(f"ALTER TABLE alerts ADD COLUMN {name} {declaration}")
    conn.execute("CREATE INDEX IF NOT EXISTS alerts_incident ON alerts (incident_id)")


def _write(
    conn: sqlite3.Connection,
    alert: Alert,
    transition: Transition | None,
    incident: Incident | None,
    actor: str,
    note: str,
) -> tuple[Alert, Incident | None]:
    if incident is not None:
        if incident.id == 0:
            incident = dataclasses.replace(
                incident, id=incident_sql.insert_incident(conn, incident)
            )
        else:
            incident_sql.update_incident(conn, incident)
        if alert.incident_id != incident.id:
            alert = dataclasses.replace(alert, incident_id=incident.id)
    if alert.id == 0:
        return _insert(conn, alert, actor, note), incident
    if transition is None:
        _update(conn, alert)
    else:
        _save(conn, alert, transition)
    return alert, incident


def _get(conn: sqlite3.Connection, alert_id: int) -> Alert:
    row = conn.execute(f"{_SELECT_ALERT} WHERE id = ?", (alert_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"alert {alert_id} does not exist")
    return _row_to_alert(row)


def _select(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[Alert]:
    return [_row_to_alert(row) for row in conn.execute(sql, params)]


def _history(conn: sqlite3.Connection, alert_id: int) -> list[Transition]:
    if not _exists(conn, alert_id):
        raise NotFoundError(f"alert {alert_id} does not exist")
    rows = conn.execute(
        "SELECT alert_id, ts_ms, actor, from_state, to_state, note FROM alert_history "
        "WHERE alert_id = ? ORDER BY id",
        (alert_id,),
    )
    return [_row_to_transition(row) for row in rows]


def _in_clause(column: str, values: Collection[str]) -> str:
    return f"{column} IN ({', '.join('?' for _ in values)})"


class AlertStore:
    """Async persistence of alerts and their transitions over one SqliteDatabase.

    The database must have been opened with :data:`ALERT_SCHEMA` in its schema.
    """

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def prepare(self) -> None:
        """Bring an older database up to this schema (idempotent; the engine's start runs it)."""
        await self._db.transaction(_prepare)

    async def write(
        self,
        alert: Alert,
        transition: Transition | None = None,
        *,
        incident: Incident | None = None,
        actor: str = "system",
        note: str = "",
    ) -> tuple[Alert, Incident | None]:
        """Store one engine decision atomically and return what was stored.

        ``alert.id == 0`` inserts it (with its first history line by ``actor``, as
        :meth:`insert`); otherwise it is updated, with ``transition`` appended if
        given. ``incident`` (``id == 0`` for a new one) is inserted or updated in
        the same transaction and the alert's ``incident_id`` set to it.
        """
        if incident is None:  # through the single-purpose methods, which subclasses may wrap
            if alert.id == 0:
                return await self.insert(alert, actor=actor, note=note), None
            if transition is None:
                await self.update(alert)
            else:
                await self.save(alert, transition)
            return alert, None
        return await self._db.transaction(_write, alert, transition, incident, actor, note)

    async def insert(self, alert: Alert, *, actor: str = "system", note: str = "") -> Alert:
        """Store a new alert and return it with its assigned id (``alert.id`` is ignored).

        The first history line (``None -> alert.state`` at ``alert.raised_at`` by
        ``actor``) is written in the same transaction, so no alert ever exists
        without the record of how it came to be.
        """
        return await self._db.transaction(_insert, alert, actor, note)

    async def update(self, alert: Alert) -> None:
        """Overwrite every field of an existing alert; NotFoundError if it does not exist."""
        await self._db.run(_update, alert)

    async def add_transition(self, transition: Transition) -> None:
        """Append one history line; NotFoundError if its alert does not exist."""
        await self._db.run(_add_transition, transition)

    async def save(self, alert: Alert, transition: Transition) -> None:
        """Update an alert and append the transition that explains it, atomically."""
        await self._db.transaction(_save, alert, transition)

    async def get(self, alert_id: int) -> Alert:
        """The alert with this id; NotFoundError if there is none."""
        return await self._db.run(_get, alert_id)

    async def list(
        self,
        *,
        states: Collection[AlertState] | None = None,
        site_ids: Collection[str] | None = None,
        device_id: str | None = None,
        severity: Severity | None = None,
        alert_class: AlertClass | None = None,
        since_ms: int | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
        incident_id: int | None = None,
    ) -> builtins.list[Alert]:
        """Alerts matching every given filter, newest (by ``raised_at``) first.

        ``None`` means "do not filter"; an empty collection matches nothing, so a
        caller who may see no sites gets no alerts rather than all of them.
        ``since_ms`` keeps alerts raised at or after that instant.
        """
        if limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        if (states is not None and not states) or (site_ids is not None and not site_ids):
            return []
        where: list[str] = []
        params: list[Any] = []
        if states is not None:
            where.append(_in_clause("state", states))
            params.extend(states)
        if site_ids is not None:
            where.append(_in_clause("site_id", site_ids))
            params.extend(site_ids)
        for column, value in (
            ("device_id", device_id),
            ("severity", severity),
            ("alert_class", alert_class),
            ("incident_id", incident_id),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since_ms is not None:
            where.append("raised_at >= ?")
            params.append(since_ms)
        sql = _SELECT_ALERT
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY raised_at DESC, id DESC LIMIT ?"
        params.append(limit)
        return await self._db.run(_select, sql, params)

    async def open_alerts(self) -> builtins.list[Alert]:
        """Every alert not yet closed, oldest first (what the engine indexes on start)."""
        sql = f"{_SELECT_ALERT} WHERE state != ? ORDER BY id"
        return await self._db.run(_select, sql, [AlertState.CLOSED])

    async def history(self, alert_id: int) -> builtins.list[Transition]:
        """The alert's transitions, oldest first; NotFoundError if the alert does not exist."""
        return await self._db.run(_history, alert_id)

    # -- incidents -------------------------------------------------------------

    async def open_incidents(self) -> builtins.list[tuple[Incident, int]]:
        """Open incidents with their newest alert's raise time (what the engine holds)."""
        return await self._db.run(incident_sql.select_open_incidents)

    async def get_incident(self, incident_id: int) -> Incident:
        """The incident with its alert ids; NotFoundError if there is none."""
        found = await self._db.run(incident_sql.select_incident, incident_id)
        if found is None:
            raise NotFoundError(f"incident {incident_id} does not exist")
        return found

    async def list_incidents(
        self,
        *,
        site_ids: Collection[str] | None = None,
        is_open: bool | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
    ) -> builtins.list[Incident]:
        """Incidents, open first, then worst severity first, then newest first.

        As for alerts, an empty ``site_ids`` matches nothing.
        """
        if limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        if site_ids is not None and not site_ids:
            return []
        sites = None if site_ids is None else builtins.list(site_ids)
        return await self._db.run(incident_sql.select_incidents, sites, is_open, limit)
