"""API tokens: random bearer tokens, stored only as SHA-256 hashes.

A token is 32 random bytes, so a fast hash is enough (no password stretching is
needed for secrets that cannot be guessed). Each token has a role and a scope like a
user (``ewg token create --role community --village east``); tokens created before
roles existed are administrators' and town-wide. People log in with a password
instead (``gateway.accounts``, ``gateway.sessions``).

The table is held in memory, but the CLI may create or replace tokens while a gateway
runs on the same data directory: each :meth:`TokenStore.authenticate` asks SQLite
whether another connection has committed since the last load (``PRAGMA data_version``,
one cheap query) and re-reads the table only then, so a new token works at once and
a replaced one stops working at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import sqlite3
from dataclasses import dataclass

from gateway import audit
from gateway.model import now_ms
from gateway.scope import TOWN, Role, Scope
from gateway.sqlite import SqliteDatabase

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_tokens (
    name TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    villages TEXT,
    enterprise TEXT
);
"""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: recorded as the actor of every operator action."""

    name: str
    role: Role
    #: What the principal may see; the whole town unless cut down (see ``gateway.scope``).
    scope: Scope = TOWN


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "ewg_" + secrets.token_urlsafe(32)


def _data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def _migrate(conn: sqlite3.Connection) -> None:
    """Give a token table from before scopes its two columns (its tokens stay town-wide)."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(api_tokens)")}
    for column in ("villages", "enterprise"):
        if column not in have:
            conn.execute(f"ALTER TABLE api_tokens ADD COLUMN {column} TEXT")


Row = tuple[str, str, str, str | None, str | None]


def _load(conn: sqlite3.Connection) -> tuple[int, list[Row]]:
    version = _data_version(conn)
    rows = conn.execute(
        "SELECT name, token_hash, role, villages, enterprise FROM api_tokens"
    ).fetchall()
    return version, rows


def _principal(name: str, role: str, villages: str | None, enterprise: str | None) -> Principal:
    as_role = Role(role)
    return Principal(name, as_role, Scope.of(as_role, json.loads(villages or "[]"), enterprise))


def _create(
    conn: sqlite3.Connection, name: str, digest: str, role: Role, scope: Scope, actor: str
) -> None:
    villages = sorted(scope.villages) if scope.villages is not None else None
    conn.execute(
        "INSERT OR REPLACE INTO api_tokens (name, token_hash, role, created_ms, villages,"
        " enterprise) VALUES (?, ?, ?, ?, ?, ?)",
        (
            name,
            digest,
            role.value,
            now_ms(),
            json.dumps(villages) if villages else None,
            scope.enterprise,
        ),
    )
    detail = {"role": role.value, "villages": villages, "enterprise": scope.enterprise}
    audit.record(conn, actor, "token.create", name, detail)


class TokenStore:
    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        self._by_hash: dict[str, Principal] = {}
        self._data_version = -1
        self._reload_lock = asyncio.Lock()

    async def load(self) -> None:
        if self._data_version < 0:
            await self.db.run(_migrate)
        self._data_version, rows = await self.db.run(_load)
        self._by_hash = {
            digest: _principal(name, role, villages, enterprise)
            for name, digest, role, villages, enterprise in rows
        }

    async def _load_if_changed(self) -> None:
        """Re-read the table if another connection (the CLI) committed since the last load."""
        async with self._reload_lock:
            if await self.db.run(_data_version) != self._data_version:
                await self.load()

    def __len__(self) -> int:
        return len(self._by_hash)

    async def create(
        self,
        name: str,
        role: Role | str = Role.ADMIN,
        *,
        villages: list[str] | tuple[str, ...] = (),
        enterprise: str | None = None,
        token: str | None = None,
        actor: str = "system",
    ) -> str:
        """Create (or replace) a named token and return it; only its hash is kept.

        ValueError for a role/scope combination that makes no sense (see ``Scope.of``).
        """
        as_role = Role(role)
        scope = Scope.of(as_role, villages, enterprise)
        token = token or new_token()
        await self.db.transaction(_create, name, hash_token(token), as_role, scope, actor)
        await self.load()
        return token

    async def authenticate(self, token: str) -> Principal | None:
        """The token's principal, or None; sees tokens created or replaced elsewhere."""
        await self._load_if_changed()
        return self._match(token)

    def _match(self, token: str) -> Principal | None:
        digest = hash_token(token)
        for known, principal in self._by_hash.items():
            if hmac.compare_digest(known, digest):
                return principal
        return None
