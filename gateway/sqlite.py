"""One SQLite database file, used from one worker thread so the event loop never blocks.

Every store built on SQLite (readings, registry, alerts, dead letters) goes through
:class:`SqliteDatabase`: ``await db.run(fn, *args)`` calls ``fn(connection, *args)``
in the database's own thread and returns its result. One thread per file means
no locking games and commits that are naturally serialised.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from gateway.errors import StoreError

T = TypeVar("T")


class SqliteDatabase:
    """Async context manager around one SQLite file and its worker thread.

    >>> import asyncio
    >>> async def demo() -> int:
    ...     async with SqliteDatabase(":memory:") as db:
    ...         await db.run(lambda c: c.execute("create table t (x)"))
    ...         await db.run(lambda c: c.execute("insert into t values (41)"))
    ...         row = await db.run(lambda c: c.execute("select x + 1 from t").fetchone())
    ...         return int(row[0])
    >>> asyncio.run(demo())
    42
    """

    def __init__(self, path: Path | str, schema: str = "") -> None:
        self.path = str(path)
        self._schema = schema
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None

    def _open(self) -> None:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before we acknowledge the MQTT messages it holds, so a
        # power cut cannot lose what the broker already forgot. Commits are batched, so
        # the fsync per commit is cheap.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA foreign_keys=ON")
        if self._schema:
            conn.executescript(self._schema)
        self._conn = conn

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._open)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=True)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(connection, *args)`` in the database thread."""
        conn = self._conn
        if conn is None:
            raise StoreError(f"database {self.path} is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, conn, *args)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    async def transaction(self, fn: Callable[..., T], *args: object) -> T:
        """Like :meth:`run`, inside ``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on error)."""

        def wrapped(conn: sqlite3.Connection, *inner: object) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn, *inner)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await self.run(wrapped, *args)
