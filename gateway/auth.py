"""API tokens: random bearer tokens, stored only as SHA-256 hashes.

A token is 32 random bytes, so a fast hash is enough (no password stretching is
needed for secrets that cannot be guessed). Accounts with passwords and roles
build on this later.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from dataclasses import dataclass

from gateway import audit
from gateway.model import now_ms
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


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "ewg_" + secrets.token_urlsafe(32)


def _create(conn: sqlite3.Connection, name: str, digest: str, role: str, actor: str) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO api_tokens VALUES (?, ?, ?, ?)", (name, digest, role, now_ms())
    )
    audit.record(conn, actor, "token.create", name, {"role": role})


class TokenStore:
    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        self._by_hash: dict[str, Principal] = {}

    async def load(self) -> None:
        rows = await self.db.run(
            lambda c: c.execute("SELECT name, token_hash, role FROM api_tokens").fetchall()
        )
        self._by_hash = {digest: Principal(name, role) for name, digest, role in rows}

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

    def authenticate(self, token: str) -> Principal | None:
        digest = hash_token(token)
        for known, principal in self._by_hash.items():
            if hmac.compare_digest(known, digest):
                return principal
        return None
