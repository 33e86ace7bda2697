"""Browser login sessions, kept server-side in SQLite.

The browser holds a random session id in the ``ewg_session`` cookie (HttpOnly);
SQLite holds only its SHA-256, so a copy of the database opens no session. A
session ends at logout, after ``session_idle_s`` without a request, after
``session_max_s`` in all, and at once when its user is disabled or changes
password (``gateway.accounts`` deletes the rows in the same transaction; the check
here is the second line of defence).

CSRF: a cookie is sent by the browser with every request to the gateway, also one
a hostile page makes it send. So every unsafe request authenticated by the cookie
must carry ``X-CSRF-Token``, which only a page of the gateway's own origin can read
(from the ``ewg_csrf`` cookie or the login answer). The token is an HMAC keyed by
the session id, so it is bound to the session and needs no table of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from gateway import audit
from gateway.accounts import User, _user
from gateway.model import now_ms
from gateway.sqlite import SqliteDatabase

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    client TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (username);
"""

SESSION_COOKIE = "ewg_session"
CSRF_COOKIE = "ewg_csrf"
CSRF_HEADER = "X-CSRF-Token"
#: ``last_seen`` is written at most this often (or a quarter of the idle time), not on every
#: request.
TOUCH_EVERY_MS = 30_000


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def csrf_token(session_id: str) -> str:
    """The CSRF token of a session (HMAC-SHA256 keyed by the secret session id)."""
    return hmac.new(session_id.encode(), b"ewg-csrf-v1", hashlib.sha256).hexdigest()


def csrf_matches(session_id: str, sent: str | None) -> bool:
    return sent is not None and hmac.compare_digest(csrf_token(session_id), sent)


@dataclass(frozen=True, slots=True)
class Session:
    user: User
    created_ms: int


def _insert(
    conn: sqlite3.Connection, digest: str, username: str, now: int, client: str, max_ms: int
) -> None:
    conn.execute("DELETE FROM sessions WHERE created_ms < ?", (now - max_ms,))
    conn.execute(
        "INSERT INTO sessions (id_hash, username, created_ms, last_seen_ms, client)"
        " VALUES (?, ?, ?, ?, ?)",
        (digest, username, now, now, client),
    )
    audit.record(conn, username, "auth.login", username, {"client": client})


def _resolve(
    conn: sqlite3.Connection, digest: str, now: int, idle_ms: int, max_ms: int
) -> Session | None:
    touch_every = min(TOUCH_EVERY_MS, idle_ms // 4)
    row = conn.execute(
        "SELECT s.created_ms, s.last_seen_ms, u.username, u.display_name, u.role, u.villages,"
        " u.enterprise, u.disabled, u.created_ms, u.password_changed_ms"
        " FROM sessions s JOIN users u ON u.username = s.username WHERE s.id_hash = ?",
        (digest,),
    ).fetchone()
    if row is None:
        return None
    created, last_seen = int(row[0]), int(row[1])
    user = _user(row[2:])
    if (
        now - last_seen > idle_ms
        or now - created > max_ms
        or user.disabled
        or user.password_changed_ms > created
    ):
        conn.execute("DELETE FROM sessions WHERE id_hash = ?", (digest,))
        return None
    if now - last_seen >= touch_every:
        conn.execute("UPDATE sessions SET last_seen_ms = ? WHERE id_hash = ?", (now, digest))
    return Session(user, created)


def _delete(conn: sqlite3.Connection, digest: str, actor: str) -> None:
    if conn.execute("DELETE FROM sessions WHERE id_hash = ?", (digest,)).rowcount:
        audit.record(conn, actor, "auth.logout", actor, {})


class SessionStore:
    def __init__(
        self,
        db: SqliteDatabase,
        idle_s: float,
        max_s: float,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.db = db
        self.idle_ms = int(idle_s * 1000)
        self.max_ms = int(max_s * 1000)
        self.clock = clock

    async def create(self, user: User, client: str = "") -> str:
        """Open a session for a user whose password was just checked; returns the id."""
        session_id = secrets.token_urlsafe(32)
        await self.db.transaction(
            _insert, _digest(session_id), user.username, self.clock(), client[:200], self.max_ms
        )
        return session_id

    async def resolve(self, session_id: str) -> Session | None:
        """The live session of this id, or None (unknown, expired, user disabled...)."""
        if not session_id or len(session_id) > 200:
            return None
        return await self.db.run(
            _resolve, _digest(session_id), self.clock(), self.idle_ms, self.max_ms
        )

    async def end(self, session_id: str, actor: str) -> None:
        await self.db.transaction(_delete, _digest(session_id), actor)

    async def count(self, username: str) -> int:
        row = await self.db.run(
            lambda c: c.execute(
                "SELECT COUNT(*) FROM sessions WHERE username = ?", (username,)
            ).fetchone()
        )
        return int(row[0])
