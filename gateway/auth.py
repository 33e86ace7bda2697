"""API tokens: random bearer tokens, stored only as SHA-256 hashes.

A token is 32 random bytes, so a fast hash is enough (no password stretching is
needed for secrets that cannot be guessed). Accounts with passwords and roles
build on this later.

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
import secrets
import sqlite3
from dataclasses import dataclass

from gateway import audit
from gateway.model import now_ms
from gateway.scope import TOWN, Scope
from gateway.sqlite import SqliteDatabase

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_tokens (
    name TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: recorded as the actor of every operator action."""

    name: str
    role: str
    #: What the principal may see; the whole town unless cut down (see ``gateway.scope``).
    scope: Scope = TOWN


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "ewg_" + secrets.token_urlsafe(32)


def _data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def _load(conn: sqlite3.Connection) -> tuple[int, list[tuple[str, str, str]]]:
    version = _data_version(conn)
    return version, conn.execute("SELECT name, token_hash, role FROM api_tokens").fetchall()


def _create(conn: sqlite3.Connection, name: str, digest: str, role: str, actor: str) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO api_tokens VALUES (?, ?, ?, ?)", (name, digest, role, now_ms())
    )
    audit.record(conn, actor, "token.create", name, {"role": role})


class TokenStore:
    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        self._by_hash: dict[str, Principal] = {}
        self._data_version = -1
        self._reload_lock = asyncio.Lock()

    async def load(self) -> None:
        self._data_version, rows = await self.db.run(_load)
        self._by_hash = {digest: Principal(name, role) for name, digest, role in rows}

    async def _load_if_changed(self) -> None:
        """Re-read the table if another connection (the CLI) committed since the last load."""
        async with self._reload_lock:
            if await self.db.run(_data_version) != self._data_version:
                await self.load()

    def __len__(self) -> int:
        return len(self._by_hash)

    async def create(
        self, name: str, role: str = "admin", *, token: str | None = None, actor: str = "system"
    ) -> str:
        """Create (or replace) a named token and return it; only its hash is kept."""
        token = token or new_token()
        await self.db.transaction(_create, name, hash_token(token), role, actor)
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
