"""Incidents: the alerts of one site that belong together, so one fire is one page.

When a workshop burns, its electrical monitor pre-warns, then a smoke alarm and a
heat detector go off and the panel's components follow, minutes apart. A duty
officer wants one line for that with the worst colour on top, not eight pages.

Grouping rule: a new alert joins its site's newest open incident if it is raised
within :attr:`~alerts.options.AlertOptions.incident_window_ms` of that incident's
latest alert (a gap, not a fixed span, so a long fire whose detectors keep going
off stays one incident); otherwise it opens a new one. An alert with no site (an
unregistered device) always opens its own: strangers are not one fire.

An incident's ``severity`` is the worst of its open alerts and only follows them;
it is closed (``closed_at``) when its last alert is closed, and a later alert at
the site opens a new incident even inside the window.

The engine owns the in-memory :class:`OpenIncidents` and writes incidents in the
same transaction as the alert that changed them (see :mod:`alerts.store`), so an
incident never exists without its first alert, nor an alert without its incident.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from alerts.model import Alert, Severity

INCIDENT_SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id   TEXT    NOT NULL,
    opened_at INTEGER NOT NULL,
    closed_at INTEGER,
    severity  TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_site ON incidents (site_id);
CREATE INDEX IF NOT EXISTS incidents_closed_at ON incidents (closed_at);
"""


@dataclass(slots=True)
class Incident:
    """One site's alerts that belong together; ``alert_ids`` in the order they joined."""

    id: int
    site_id: str
    opened_at: int
    severity: Severity
    closed_at: int | None = None
    alert_ids: tuple[int, ...] = ()

    @property
    def is_open(self) -> bool:
        return self.closed_at is None


@dataclass(slots=True)
class _Held:
    incident: Incident
    #: Raise time of its newest alert: the grouping window runs from here.
    last_raised_at: int


class OpenIncidents:
    """The open incidents, in memory: where a new alert goes, what a change does.

    Methods that decide return *new* Incident objects and change nothing; only
    :meth:`commit`, called after the write succeeded, updates what is held. That
    is the engine's copy-on-write rule: a failed write leaves memory as it was.
    """

    def __init__(self, window_ms: int) -> None:
        self._window_ms = window_ms
        self._held: dict[int, _Held] = {}
        self._newest_by_site: dict[str, int] = {}

    def load(self, incidents: Iterable[tuple[Incident, int]]) -> None:
        """Replace what is held by (incident, latest alert raise time) pairs from disk."""
        self._held.clear()
        self._newest_by_site.clear()
        for incident, last_raised_at in incidents:
            self._hold(dataclasses.replace(incident), last_raised_at)

    def get(self, incident_id: int) -> Incident | None:
        held = self._held.get(incident_id)
        return None if held is None else dataclasses.replace(held.incident)

    def place(self, alert: Alert) -> Incident:
        """The incident a new alert joins (a changed copy), or a new one with id 0."""
        if alert.site_id:
            newest = self._newest_by_site.get(alert.site_id)
            held = self._held.get(newest) if newest is not None else None
            if held is not None and alert.raised_at - held.last_raised_at <= self._window_ms:
                current = held.incident
                return dataclasses.replace(
                    current,
                    opened_at=min(current.opened_at, alert.raised_at),
                    severity=_worse(current.severity, alert.severity),
                )
        return Incident(0, alert.site_id, alert.raised_at, alert.severity)

    def after_change(
        self, alert: Alert, open_alert: Callable[[int], Alert | None], now_ms: int
    ) -> Incident | None:
        """The alert's incident as this change of ``alert`` leaves it, or None if unchanged.

        ``open_alert`` looks up the other alerts as last committed (None once closed).
        """
        if alert.incident_id is None:
            return None
        held = self._held.get(alert.incident_id)
        if held is None:
            return None  # closed already, or from before incidents existed
        current = held.incident
        still_open = [alert] if alert.is_open else []
        for other_id in current.alert_ids:
            if other_id != alert.id:
                other = open_alert(other_id)
                if other is not None and other.is_open:
                    still_open.append(other)
        if not still_open:
            return dataclasses.replace(current, closed_at=now_ms)
        severity = max((a.severity for a in still_open), key=lambda s: s.rank)
        if severity is current.severity:
            return None
        return dataclasses.replace(current, severity=severity)

    def commit(self, incident: Incident, alert: Alert) -> None:
        """After the write: hold the incident as stored (``alert`` is the one that changed)."""
        held = self._held.get(incident.id)
        ids = incident.alert_ids
        if alert.id not in ids:
            ids = (*ids, alert.id)
        stored = dataclasses.replace(incident, alert_ids=ids)
        if not stored.is_open:
            self._release(stored.id)
            return
        last = alert.raised_at if held is None else max(held.last_raised_at, alert.raised_at)
        self._hold(stored, last)

    def _hold(self, incident: Incident, last_raised_at: int) -> None:
        self._held[incident.id] = _Held(incident, last_raised_at)
        newest = self._newest_by_site.get(incident.site_id)
        if incident.site_id and (newest is None or newest <= incident.id):
            self._newest_by_site[incident.site_id] = incident.id

    def _release(self, incident_id: int) -> None:
        held = self._held.pop(incident_id, None)
        if held is None:
            return
        site = held.incident.site_id
        if self._newest_by_site.get(site) == incident_id:
            del self._newest_by_site[site]
            remaining = [i for i, h in self._held.items() if h.incident.site_id == site]
            if remaining:
                self._newest_by_site[site] = max(remaining)


def _worse(a: Severity, b: Severity) -> Severity:
    return a if a.rank >= b.rank else b


# -- SQL (called by alerts.store inside its transactions) -----------------------

_COLUMNS = "id, site_id, opened_at, closed_at, severity"
_RANK_SQL = "CASE severity WHEN 'red' THEN 4 WHEN 'orange' THEN 3 WHEN 'yellow' THEN 2 ELSE 1 END"


def insert_incident(conn: sqlite3.Connection, incident: Incident) -> int:
    cur = conn.execute(
        "INSERT INTO incidents (site_id, opened_at, closed_at, severity) VALUES (?, ?, ?, ?)",
        (incident.site_id, incident.opened_at, incident.closed_at, incident.severity),
    )
    assert cur.lastrowid is not None  # an INSERT into a rowid table always sets it
    return cur.lastrowid


def update_incident(conn: sqlite3.Connection, incident: Incident) -> None:
    conn.execute(
        "UPDATE incidents SET opened_at = ?, closed_at = ?, severity = ? WHERE id = ?",
        (incident.opened_at, incident.closed_at, incident.severity, incident.id),
    )


def _with_alerts(conn: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> list[Incident]:
    incidents = [
        Incident(id=r[0], site_id=r[1], opened_at=r[2], closed_at=r[3], severity=Severity(r[4]))
        for r in rows
    ]
    if not incidents:
        return []
    ids: dict[int, list[int]] = {i.id: [] for i in incidents}
    marks = ", ".join("?" for _ in ids)
    for incident_id, alert_id in conn.execute(
        f"SELECT incident_id, id FROM alerts WHERE incident_id IN ({marks}) ORDER BY id",
        list(ids),
    ):
        ids[incident_id].append(alert_id)
    for incident in incidents:
        incident.alert_ids = tuple(ids[incident.id])
    return incidents


def select_incident(conn: sqlite3.Connection, incident_id: int) -> Incident | None:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM incidents WHERE id = ?", (incident_id,))
    found = _with_alerts(conn, rows.fetchall())
    return found[0] if found else None


def select_incidents(
    conn: sqlite3.Connection,
    site_ids: Sequence[str] | None,
    is_open: bool | None,
    limit: int,
) -> list[Incident]:
    """Open first, then worst severity first, then newest first."""
    where: list[str] = []
    params: list[Any] = []
    if site_ids is not None:
        where.append(f"site_id IN ({', '.join('?' for _ in site_ids)})")
        params.extend(site_ids)
    if is_open is not None:
        where.append("closed_at IS NULL" if is_open else "closed_at IS NOT NULL")
    sql = f"SELECT {_COLUMNS} FROM incidents"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY closed_at IS NOT NULL, {_RANK_SQL} DESC, opened_at DESC, id DESC LIMIT ?"
    params.append(limit)
    return _with_alerts(conn, conn.execute(sql, params).fetchall())


def select_open_incidents(conn: sqlite3.Connection) -> list[tuple[Incident, int]]:
    """Open incidents with their newest alert's raise time (what the engine holds)."""
    incidents = _with_alerts(
        conn,
        conn.execute(
            f"SELECT {_COLUMNS} FROM incidents WHERE closed_at IS NULL ORDER BY id"
        ).fetchall(),
    )
    out: list[tuple[Incident, int]] = []
    for incident in incidents:
        row = conn.execute(
            "SELECT MAX(raised_at) FROM alerts WHERE incident_id = ?", (incident.id,)
        ).fetchone()
        out.append((incident, incident.opened_at if row[0] is None else int(row[0])))
    return out
