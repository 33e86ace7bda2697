"""People who log in: users with a role, a scope and an argon2id password hash.

Passwords are hashed with argon2id through ``pwdlib`` (its recommended parameters);
the clear text is never stored, logged or audited. Checking a password takes the
same time whether or not the user exists (an unknown name is checked against a
dummy hash), so the login answer does not tell which usernames are real.

Hashing is deliberately slow (tens of milliseconds, 64 MiB), so it runs in a worker
thread, never in the event loop and never in the database thread.

Disabling a user or changing their password ends all their sessions in the same
transaction (``gateway.sessions``), so a stolen session dies with the old password.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from dataclasses import dataclass
from functools import lru_cache

from pwdlib import PasswordHash

from gateway import audit
from gateway.auth import Principal
from gateway.errors import ConflictError, NotFoundError
from gateway.model import now_ms
from gateway.scope import Role, Scope
from gateway.sqlite import SqliteDatabase

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL,
    villages TEXT,
    enterprise TEXT,
    password_hash TEXT NOT NULL,
    password_changed_ms INTEGER NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL
);
"""

USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.@-]{1,63}$")
#: Shorter passwords are refused; length beats composition rules (NIST SP 800-63B).
MIN_PASSWORD = 10
MAX_PASSWORD = 1024


@lru_cache(maxsize=1)
def hasher() -> PasswordHash:
    """argon2id with pwdlib's recommended parameters (built once: it is not free)."""
    return PasswordHash.recommended()


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hasher().hash("not a password anyone has: timing filler")


def hash_password(password: str) -> str:
    return hasher().hash(password)


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"the password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise ValueError(f"the password must have at most {MAX_PASSWORD} characters")


@dataclass(frozen=True, slots=True)
class User:
    username: str
    display_name: str
    role: Role
    scope: Scope
    disabled: bool
    created_ms: int
    password_changed_ms: int

    @property
    def villages(self) -> list[str] | None:
        return None if self.scope.villages is None else sorted(self.scope.villages)

    @property
    def enterprise(self) -> str | None:
        return self.scope.enterprise

    def principal(self) -> Principal:
        return Principal(self.username, self.role, self.scope)


_COLUMNS = (
    "username, display_name, role, villages, enterprise, disabled, created_ms,"
    " password_changed_ms, password_hash"
)


def _user(row: tuple[object, ...]) -> User:
    username, display, role, villages, enterprise, disabled, created, changed = row[:8]
    village_list = json.loads(str(villages)) if villages else []
    return User(
        username=str(username),
        display_name=str(display),
        role=Role(str(role)),
        scope=Scope.of(Role(str(role)), village_list, str(enterprise) if enterprise else None),
        disabled=bool(disabled),
        created_ms=int(str(created)),
        password_changed_ms=int(str(changed)),
    )


def _select(conn: sqlite3.Connection, username: str) -> tuple[User, str] | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM users WHERE username = ?", (username,)).fetchone()
    return None if row is None else (_user(row), str(row[8]))


def _insert(conn: sqlite3.Connection, user: User, digest: str, actor: str) -> None:
    if conn.execute("SELECT 1 FROM users WHERE username = ?", (user.username,)).fetchone():
        raise ConflictError(f"user {user.username!r} exists already")
    conn.execute(
        f"INSERT INTO users ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            user.username,
            user.display_name,
            user.role.value,
            json.dumps(user.villages) if user.villages else None,
            user.enterprise,
            0,
            user.created_ms,
            user.password_changed_ms,
            digest,
        ),
    )
    audit.record(
        conn,
        actor,
        "user.add",
        user.username,
        {"role": user.role.value, "villages": user.villages, "enterprise": user.enterprise},
    )


def _end_sessions(conn: sqlite3.Connection, username: str) -> int:
    return conn.execute("DELETE FROM sessions WHERE username = ?", (username,)).rowcount


def _set_password(conn: sqlite3.Connection, username: str, digest: str, actor: str) -> None:
    changed = conn.execute(
        "UPDATE users SET password_hash = ?, password_changed_ms = ? WHERE username = ?",
        (digest, now_ms(), username),
    ).rowcount
    if not changed:
        raise NotFoundError(f"user {username!r} not found")
    ended = _end_sessions(conn, username)
    audit.record(conn, actor, "user.passwd", username, {"sessions_ended": ended})


def _set_disabled(conn: sqlite3.Connection, username: str, disabled: bool, actor: str) -> None:
    changed = conn.execute(
        "UPDATE users SET disabled = ? WHERE username = ?", (int(disabled), username)
    ).rowcount
    if not changed:
        raise NotFoundError(f"user {username!r} not found")
    ended = _end_sessions(conn, username) if disabled else 0
    action = "user.disable" if disabled else "user.enable"
    audit.record(conn, actor, action, username, {"sessions_ended": ended})


class UserStore:
    """The users table. Reads go to SQLite each time: the CLI may change it under a gateway."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def add(
        self,
        username: str,
        password: str,
        role: Role | str,
        *,
        display_name: str = "",
        villages: list[str] | tuple[str, ...] = (),
        enterprise: str | None = None,
        actor: str = "system",
    ) -> User:
        """Create a user; ValueError for a bad name, password or role/scope combination."""
        if not USERNAME.match(username):
            raise ValueError(
                f"username {username!r}: 2-64 characters, lower-case letters, digits and _.@-"
            )
        check_password_rules(password)
        role = Role(role)
        scope = Scope.of(role, villages, enterprise)
        now = now_ms()
        user = User(username, display_name.strip() or username, role, scope, False, now, now)
        digest = await asyncio.to_thread(hash_password, password)
        await self.db.transaction(_insert, user, digest, actor)
        return user

    async def get(self, username: str) -> User | None:
        found = await self.db.run(_select, username)
        return None if found is None else found[0]

    async def list(self) -> list[User]:
        rows = await self.db.run(
            lambda c: c.execute(f"SELECT {_COLUMNS} FROM users ORDER BY username").fetchall()
        )
        return [_user(r) for r in rows]

    async def verify(self, username: str, password: str) -> User | None:
        """The user if the password is right and the user is enabled; else None.

        An unknown or disabled user costs one argon2 verification too, so timing
        tells nothing about which names exist.
        """
        found = await self.db.run(_select, username) if len(password) <= MAX_PASSWORD else None
        digest = found[1] if found else _dummy_hash()
        ok = await asyncio.to_thread(hasher().verify, password[:MAX_PASSWORD], digest)
        if found is None or not ok or found[0].disabled:
            return None
        return found[0]

    async def set_password(self, username: str, password: str, actor: str) -> None:
        """Change the password; every session of the user ends."""
        check_password_rules(password)
        digest = await asyncio.to_thread(hash_password, password)
        await self.db.transaction(_set_password, username, digest, actor)

    async def set_disabled(self, username: str, disabled: bool, actor: str) -> None:
        """Disable (ending every session) or enable again."""
        await self.db.transaction(_set_disabled, username, disabled, actor)
