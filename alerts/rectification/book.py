"""The rectification book: items, their history and evidence in SQLite, and the overdue sweep.

Every change to an item is one transaction that writes the item, the history line
that explains it (who, when, from, to, note) and the audit-log entry together, so
the checklist, its history and the office's audit can never disagree. Triggers
make the tables refuse what EWG must never do even by mistake: deleting an item,
rewriting history or evidence, moving a state other than along the legal moves
(a verified item is final), or changing where an item came from.

Overdue items (deadline passed, not verified) are flagged on every read from the
clock, and the sweep (:meth:`RectificationBook.sweep`, run periodically while the
gateway runs) records the moment each item first became overdue as a history
line and an audit entry and tells listeners, so escalation can act on it.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

from alerts.model import Alert
from alerts.rectification.evidence import (
    EvidenceFiles,
    StoredFile,
    UploadSource,
)
from alerts.rectification.model import (
    Action,
    Evidence,
    HistoryLine,
    InvalidItem,
    Item,
    ItemState,
    NewItem,
    SiteCounts,
    Source,
    check_move,
)
from gateway import audit
from gateway.errors import ConflictError, NotFoundError
from gateway.model import now_ms
from gateway.registry_model import Site
from gateway.sqlite import SqliteDatabase

log = logging.getLogger(__name__)

SYSTEM_ACTOR = "system"

_LEGAL_STATE_CHANGES = " OR ".join(
    f"(OLD.state = '{a}' AND NEW.state = '{b}')"
    for a, b in (
        (ItemState.OPEN, ItemState.FIX_REPORTED),
        (ItemState.FIX_REPORTED, ItemState.VERIFIED),
        (ItemState.FIX_REPORTED, ItemState.OPEN),
    )
)

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS rectifications (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    source      TEXT    NOT NULL,
    alert_id    INTEGER REFERENCES alerts (id),
    site_id     TEXT    NOT NULL,
    enterprise  TEXT    NOT NULL,
    hazard      TEXT    NOT NULL,
    description TEXT    NOT NULL,
    major       INTEGER NOT NULL DEFAULT 0,
    assignee    TEXT    NOT NULL,
    deadline_ms INTEGER NOT NULL,
    state       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    created_by  TEXT    NOT NULL,
    updated_at  INTEGER NOT NULL,
    reported_at INTEGER,
    reported_by TEXT,
    verified_at INTEGER,
    verified_by TEXT,
    sent_back   INTEGER NOT NULL DEFAULT 0,
    overdue_at  INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS rectifications_alert
    ON rectifications (alert_id) WHERE alert_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS rectifications_state_deadline ON rectifications (state, deadline_ms);
CREATE INDEX IF NOT EXISTS rectifications_site ON rectifications (site_id);
CREATE TRIGGER IF NOT EXISTS rectifications_no_delete BEFORE DELETE ON rectifications
BEGIN SELECT RAISE(ABORT, 'rectification items are never deleted; verify (销号) them instead'); END;
-- INSERT OR REPLACE / REPLACE on an existing id deletes the old row without firing DELETE
-- triggers (SQLite runs them for REPLACE only with recursive_triggers on): refuse it here,
-- as for the audit log. The same guard follows each append-only table below.
CREATE TRIGGER IF NOT EXISTS rectifications_no_replace BEFORE INSERT ON rectifications
WHEN EXISTS (SELECT 1 FROM rectifications WHERE id = NEW.id)
BEGIN SELECT RAISE(ABORT, 'rectification items are never replaced'); END;
CREATE TRIGGER IF NOT EXISTS rectifications_keep_origin BEFORE UPDATE ON rectifications
WHEN OLD.id IS NOT NEW.id OR OLD.source IS NOT NEW.source OR OLD.alert_id IS NOT NEW.alert_id
  OR OLD.site_id IS NOT NEW.site_id OR OLD.created_at IS NOT NEW.created_at
  OR OLD.created_by IS NOT NEW.created_by
BEGIN SELECT RAISE(ABORT, 'where a rectification item came from cannot be changed'); END;
CREATE TRIGGER IF NOT EXISTS rectifications_legal_moves BEFORE UPDATE OF state ON rectifications
WHEN OLD.state IS NOT NEW.state AND NOT ({_LEGAL_STATE_CHANGES})
BEGIN SELECT RAISE(ABORT, 'illegal rectification state change'); END;

CREATE TABLE IF NOT EXISTS rectification_history (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id    INTEGER NOT NULL REFERENCES rectifications (id),
    ts_ms      INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    from_state TEXT,
    to_state   TEXT    NOT NULL,
    note       TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS rectification_history_item ON rectification_history (item_id);
CREATE TRIGGER IF NOT EXISTS rectification_history_no_update
BEFORE UPDATE ON rectification_history
BEGIN SELECT RAISE(ABORT, 'rectification history is append-only'); END;
CREATE TRIGGER IF NOT EXISTS rectification_history_no_delete
BEFORE DELETE ON rectification_history
BEGIN SELECT RAISE(ABORT, 'rectification history is append-only'); END;
CREATE TRIGGER IF NOT EXISTS rectification_history_no_replace
BEFORE INSERT ON rectification_history
WHEN EXISTS (SELECT 1 FROM rectification_history WHERE id = NEW.id)
BEGIN SELECT RAISE(ABORT, 'rectification history is append-only'); END;

CREATE TABLE IF NOT EXISTS rectification_evidence (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id      INTEGER NOT NULL REFERENCES rectifications (id),
    history_id   INTEGER NOT NULL REFERENCES rectification_history (id),
    filename     TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT    NOT NULL,
    uploaded_at  INTEGER NOT NULL,
    uploaded_by  TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS rectification_evidence_item ON rectification_evidence (item_id);
CREATE TRIGGER IF NOT EXISTS rectification_evidence_no_update
BEFORE UPDATE ON rectification_evidence
BEGIN SELECT RAISE(ABORT, 'rectification evidence is never changed'); END;
CREATE TRIGGER IF NOT EXISTS rectification_evidence_no_delete
BEFORE DELETE ON rectification_evidence
BEGIN SELECT RAISE(ABORT, 'rectification evidence is never deleted'); END;
CREATE TRIGGER IF NOT EXISTS rectification_evidence_no_replace
BEFORE INSERT ON rectification_evidence
WHEN EXISTS (SELECT 1 FROM rectification_evidence WHERE id = NEW.id)
BEGIN SELECT RAISE(ABORT, 'rectification evidence is never changed'); END;
"""

_ITEM_COLUMNS = tuple(f.name for f in fields(Item))
_SELECT_ITEM = f"SELECT {', '.join(_ITEM_COLUMNS)} FROM rectifications"
_HISTORY_COLUMNS = "id, item_id, ts_ms, actor, action, from_state, to_state, note"
_EVIDENCE_COLUMNS = (
    "id, item_id, history_id, filename, content_type, size, sha256, uploaded_at, uploaded_by"
)

DEFAULT_LIST_LIMIT = 500


class RectificationListener(Protocol):
    def on_overdue(self, item: Item) -> None: ...


@dataclass(frozen=True, slots=True)
class ItemFilter:
    """``None`` means "do not filter"; an empty ``site_ids`` matches nothing."""

    states: Collection[ItemState] | None = None
    site_ids: Collection[str] | None = None
    overdue: bool | None = None
    source: Source | None = None
    major: bool | None = None
    limit: int = DEFAULT_LIST_LIMIT


# -- rows ------------------------------------------------------------------------------


def _item(row: Sequence[Any]) -> Item:
    v = dict(zip(_ITEM_COLUMNS, row, strict=True))
    v["source"] = Source(v["source"])
    v["state"] = ItemState(v["state"])
    v["major"] = bool(v["major"])
    return Item(**v)


def _line(row: Sequence[Any]) -> HistoryLine:
    id_, item_id, ts_ms, actor, action, from_state, to_state, note = row
    return HistoryLine(
        id_,
        item_id,
        ts_ms,
        actor,
        Action(action),
        None if from_state is None else ItemState(from_state),
        ItemState(to_state),
        note,
    )


def _evidence(row: Sequence[Any]) -> Evidence:
    return Evidence(*row)


# -- in the database thread --------------------------------------------------------------


def _get(conn: sqlite3.Connection, item_id: int) -> Item:
    row = conn.execute(f"{_SELECT_ITEM} WHERE id = ?", (item_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"rectification item {item_id} does not exist")
    return _item(row)


def _add_line(
    conn: sqlite3.Connection,
    item_id: int,
    ts_ms: int,
    actor: str,
    action: Action,
    from_state: ItemState | None,
    to_state: ItemState,
    note: str,
) -> int:
    cur = conn.execute(
        "INSERT INTO rectification_history"
        " (item_id, ts_ms, actor, action, from_state, to_state, note)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (item_id, ts_ms, actor, action, from_state, to_state, note),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


def _insert(conn: sqlite3.Connection, item: Item) -> Item:
    if item.alert_id is not None:
        row = conn.execute(
            "SELECT id FROM rectifications WHERE alert_id = ?", (item.alert_id,)
        ).fetchone()
        if row is not None:
            raise ConflictError(
                f"alert {item.alert_id} is already listed as rectification item {row[0]}"
            )
    data = [c for c in _ITEM_COLUMNS if c != "id"]
    cur = conn.execute(
        f"INSERT INTO rectifications ({', '.join(data)}) VALUES ({', '.join('?' for _ in data)})",
        [getattr(item, c) for c in data],
    )
    assert cur.lastrowid is not None
    item_id = cur.lastrowid
    _add_line(
        conn,
        item_id,
        item.created_at,
        item.created_by,
        Action.CREATE,
        None,
        ItemState.OPEN,
        item.description,
    )
    audit.record(
        conn,
        item.created_by,
        "rectification.create",
        f"rectification:{item_id}",
        {
            "source": item.source,
            "alert_id": item.alert_id,
            "site_id": item.site_id,
            "hazard": item.hazard,
            "assignee": item.assignee,
            "deadline_ms": item.deadline_ms,
        },
    )
    return _get(conn, item_id)


def _move(
    conn: sqlite3.Connection,
    item_id: int,
    action: Action,
    actor: str,
    note: str,
    ts_ms: int,
    files: Sequence[StoredFile] = (),
) -> Item:
    current = _get(conn, item_id)
    to_state = check_move(item_id, action, current.state)
    sets: dict[str, Any] = {"state": to_state, "updated_at": ts_ms}
    if action is Action.REPORT:
        sets |= {"reported_at": ts_ms, "reported_by": actor}
    elif action is Action.VERIFY:
        sets |= {"verified_at": ts_ms, "verified_by": actor}
    elif action is Action.SEND_BACK:
        sets["sent_back"] = current.sent_back + 1
    conn.execute(
        f"UPDATE rectifications SET {', '.join(f'{k} = ?' for k in sets)} WHERE id = ?",
        [*sets.values(), item_id],
    )
    line_id = _add_line(conn, item_id, ts_ms, actor, action, current.state, to_state, note)
    for f in files:
        conn.execute(
            "INSERT INTO rectification_evidence"
            " (item_id, history_id, filename, content_type, size, sha256, uploaded_at,"
            " uploaded_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (item_id, line_id, f.filename, f.content_type, f.size, f.sha256, ts_ms, actor),
        )
    detail: dict[str, Any] = {"from": current.state, "to": to_state, "note": note}
    if files:
        detail["evidence_sha256"] = [f.sha256 for f in files]
    audit.record(conn, actor, f"rectification.{action}", f"rectification:{item_id}", detail)
    return _get(conn, item_id)


def _mark_overdue(conn: sqlite3.Connection, ts_ms: int) -> list[Item]:
    rows = conn.execute(
        f"{_SELECT_ITEM} WHERE state != ? AND deadline_ms < ? AND overdue_at IS NULL ORDER BY id",
        (ItemState.VERIFIED, ts_ms),
    ).fetchall()
    found = []
    for row in rows:
        item = _item(row)
        conn.execute("UPDATE rectifications SET overdue_at = ? WHERE id = ?", (ts_ms, item.id))
        note = f"deadline passed while {item.state}"
        _add_line(conn, item.id, ts_ms, SYSTEM_ACTOR, Action.OVERDUE, item.state, item.state, note)
        audit.record(
            conn,
            SYSTEM_ACTOR,
            "rectification.overdue",
            f"rectification:{item.id}",
            {"deadline_ms": item.deadline_ms, "state": item.state},
        )
        found.append(_get(conn, item.id))
    return found


def _select(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[Item]:
    return [_item(row) for row in conn.execute(sql, params)]


def _history(conn: sqlite3.Connection, item_id: int) -> list[HistoryLine]:
    _get(conn, item_id)
    rows = conn.execute(
        f"SELECT {_HISTORY_COLUMNS} FROM rectification_history WHERE item_id = ? ORDER BY id",
        (item_id,),
    )
    return [_line(r) for r in rows]


def _evidence_list(conn: sqlite3.Connection, item_id: int) -> list[Evidence]:
    _get(conn, item_id)
    rows = conn.execute(
        f"SELECT {_EVIDENCE_COLUMNS} FROM rectification_evidence WHERE item_id = ? ORDER BY id",
        (item_id,),
    )
    return [_evidence(r) for r in rows]


def _one_evidence(conn: sqlite3.Connection, item_id: int, evidence_id: int) -> Evidence:
    _get(conn, item_id)
    row = conn.execute(
        f"SELECT {_EVIDENCE_COLUMNS} FROM rectification_evidence WHERE id = ? AND item_id = ?",
        (evidence_id, item_id),
    ).fetchone()
    if row is None:
        raise NotFoundError(f"rectification item {item_id} has no evidence {evidence_id}")
    return _evidence(row)


def _counts(
    conn: sqlite3.Connection, since_ms: int, until_ms: int, now: int
) -> dict[str, SiteCounts]:
    rows = conn.execute(
        "SELECT site_id,"
        " SUM(state != :verified),"
        " SUM(state != :verified AND deadline_ms < :now),"
        " SUM(created_at >= :since AND created_at < :until),"
        " SUM(verified_at >= :since AND verified_at < :until)"
        " FROM rectifications GROUP BY site_id",
        {"verified": ItemState.VERIFIED, "now": now, "since": since_ms, "until": until_ms},
    )
    return {
        site_id: SiteCounts(int(o or 0), int(d or 0), int(c or 0), int(v or 0))
        for site_id, o, d, c, v in rows
    }


def _ensure_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


# -- the book ----------------------------------------------------------------------------


class RectificationBook:
    """Lists hazards as items and moves them through report, verify and send-back.

    Parameters
    ----------
    db
        The gateway's main database (the ``alerts`` table must be in it: alert-based
        items reference their alert). The book creates its own tables on :meth:`start`.
    files
        Where evidence bytes go (``data_dir / "evidence"``).
    site_of
        The registry's site lookup: an item belongs to a registered site, so it is
        counted under the site's village and industry like the site's alerts.
    alert_of
        Looks up an alert by id (raises NotFoundError), for items made from alerts.
    clock
        Epoch milliseconds; injectable so deadlines can be tested without waiting.
    """

    def __init__(
        self,
        db: SqliteDatabase,
        files: EvidenceFiles,
        site_of: Callable[[str], Site | None],
        alert_of: Callable[[int], Awaitable[Alert]],
        *,
        clock: Callable[[], int] = now_ms,
        sweep_interval_s: float = 60.0,
    ) -> None:
        self._db = db
        self.files = files
        self._site_of = site_of
        self._alert_of = alert_of
        self.clock = clock
        self._sweep_interval_s = sweep_interval_s
        self._task: asyncio.Task[None] | None = None
        self._listeners: builtins.list[RectificationListener] = []

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, *, sweep: bool = True) -> None:
        """Create the tables if needed and (unless ``sweep=False``) start the overdue sweep."""
        await self._db.run(_ensure_schema)
        if sweep and self._task is None:
            self._task = asyncio.create_task(self._sweep_forever(), name="ewg-rectification")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:  # a failed sweep is retried next round; never stop watching
                log.exception("rectification overdue sweep failed")
            await asyncio.sleep(self._sweep_interval_s)

    def add_listener(self, listener: RectificationListener) -> None:
        """In-process consumers of "item became overdue" (escalation, notifications).

        ``on_overdue`` must not block; a listener that raises is logged and skipped.
        """
        self._listeners.append(listener)

    # -- changes -----------------------------------------------------------------------

    async def create(self, new: NewItem, actor: str) -> Item:
        """List a hazard; from an alert (site and hazard taken from it) or from a finding."""
        _require(actor, "actor")
        now = self.clock()
        site_id, hazard, description = new.site_id, new.hazard, new.description.strip()
        if new.source is Source.ALERT:
            if new.alert_id is None:
                raise InvalidItem("an item with source 'alert' needs an alert_id")
            try:
                alert = await self._alert_of(new.alert_id)
            except NotFoundError:
                raise InvalidItem(f"alert {new.alert_id} does not exist") from None
            if site_id and alert.site_id and site_id != alert.site_id:
                raise InvalidItem(f"alert {alert.id} is at site {alert.site_id!r}, not {site_id!r}")
            site_id = alert.site_id or site_id
            hazard = hazard or alert.hazard
            description = description or alert.message
        elif new.alert_id is not None:
            raise InvalidItem(f"an item from an alert must have source 'alert', not {new.source!r}")
        if not site_id:
            raise InvalidItem("site_id is required (the site where the hazard is)")
        site = self._site_of(site_id)
        if site is None:
            raise InvalidItem(f"site {site_id!r} is not registered; register it first")
        enterprise = (new.enterprise or "").strip() or site.enterprise
        _require(enterprise, f"enterprise (site {site_id!r} has none on record)")
        _require(hazard or "", "hazard")
        _require(description, "description")
        _require(new.assignee, "assignee")
        if new.deadline_ms <= now:
            raise InvalidItem("the deadline must be in the future")
        item = Item(
            id=0,
            source=new.source,
            alert_id=new.alert_id,
            site_id=site_id,
            enterprise=enterprise,
            hazard=(hazard or "").strip(),
            description=description,
            major=new.major,
            assignee=new.assignee.strip(),
            deadline_ms=new.deadline_ms,
            state=ItemState.OPEN,
            created_at=now,
            created_by=actor,
            updated_at=now,
        )
        return await self._db.transaction(_insert, item)

    async def report(
        self, item_id: int, actor: str, note: str, uploads: Sequence[UploadSource] = ()
    ) -> Item:
        """The enterprise reports the fix: a note and optional evidence files.

        The state is checked before any file is read, so a refused report writes
        nothing; it is checked again in the transaction that records it.
        """
        _require(actor, "actor")
        _require(note, "note (what was fixed, and how)")
        check_move(item_id, Action.REPORT, (await self.get(item_id)).state)
        types = await self.files.check(list(uploads))
        stored = [await self.files.save(u, t) for u, t in zip(uploads, types, strict=True)]
        return await self._db.transaction(
            _move, item_id, Action.REPORT, actor, note.strip(), self.clock(), stored
        )

    async def verify(self, item_id: int, actor: str, note: str = "") -> Item:
        """Strike the item off (销号) after checking the reported fix. Final."""
        _require(actor, "actor")
        return await self._db.transaction(
            _move, item_id, Action.VERIFY, actor, note.strip(), self.clock()
        )

    async def send_back(self, item_id: int, actor: str, reason: str) -> Item:
        """The reported fix is not good enough: the item is open again, with the reason."""
        _require(actor, "actor")
        _require(reason, "reason (why the fix is not accepted)")
        return await self._db.transaction(
            _move, item_id, Action.SEND_BACK, actor, reason.strip(), self.clock()
        )

    async def sweep(self) -> builtins.list[Item]:
        """Record items that became overdue since the last sweep; return them."""
        found = await self._db.transaction(_mark_overdue, self.clock())
        for item in found:
            for listener in self._listeners:
                try:
                    listener.on_overdue(item)
                except Exception:
                    log.exception("rectification listener %r failed", listener)
        return found

    # -- reads -------------------------------------------------------------------------

    async def get(self, item_id: int) -> Item:
        return await self._db.run(_get, item_id)

    async def history(self, item_id: int) -> builtins.list[HistoryLine]:
        return await self._db.run(_history, item_id)

    async def evidence(self, item_id: int) -> builtins.list[Evidence]:
        return await self._db.run(_evidence_list, item_id)

    async def evidence_file(self, item_id: int, evidence_id: int) -> tuple[Evidence, bytes]:
        """One evidence record and its bytes (checked against the recorded hash)."""
        record = await self._db.run(_one_evidence, item_id, evidence_id)
        return record, await self.files.read(record.sha256)

    async def list(self, where: ItemFilter | None = None) -> builtins.list[Item]:
        """Items matching every filter, most urgent (earliest deadline) first."""
        f = where or ItemFilter()
        if f.limit < 0:
            raise ValueError(f"limit must not be negative, got {f.limit}")
        if (f.states is not None and not f.states) or (f.site_ids is not None and not f.site_ids):
            return []
        clauses: builtins.list[str] = []
        params: builtins.list[Any] = []
        for column, values in (("state", f.states), ("site_id", f.site_ids)):
            if values is not None:
                clauses.append(f"{column} IN ({', '.join('?' for _ in values)})")
                params.extend(values)
        if f.source is not None:
            clauses.append("source = ?")
            params.append(f.source)
        if f.major is not None:
            clauses.append("major = ?")
            params.append(int(f.major))
        if f.overdue is not None:
            overdue = "(state != ? AND deadline_ms < ?)"
            clauses.append(overdue if f.overdue else f"NOT {overdue}")
            params.extend([ItemState.VERIFIED, self.clock()])
        sql = _SELECT_ITEM
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY deadline_ms, id LIMIT ?"
        params.append(f.limit)
        return await self._db.run(_select, sql, params)

    async def counts_by_site(self, since_ms: int, until_ms: int) -> dict[str, SiteCounts]:
        """Per site: open and overdue now; created and verified in ``[since, until)``."""
        return await self._db.run(_counts, since_ms, until_ms, self.clock())


def _require(value: str, what: str) -> None:
    if not value.strip():
        raise InvalidItem(f"{what} must not be empty")
