"""A thin SQL dialect layer: SQLite (WAL) by default, PostgreSQL given a URL.

The hub's SQL is written once, portably: ``?`` placeholders, ``INSERT ...
ON CONFLICT (...) DO NOTHING / DO UPDATE``, ``TEXT``, ``BIGINT`` and ``DOUBLE
PRECISION`` columns. :class:`Database` translates placeholders for
PostgreSQL (psycopg 3, an optional dependency: ``pip install 'storesense[postgres]'``)
and serialises use of its one connection with a lock, so the MQTT thread and
the HTTP threads can share it. A lost PostgreSQL connection is opened again
before the next statement (the ingest retries a write that failed meanwhile).

:func:`open_database` takes a file path (SQLite), ``sqlite:///PATH``,
``:memory:`` or ``postgresql://user@host:port/dbname``.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import StoresenseError

log = logging.getLogger(__name__)


class DatabaseError(StoresenseError):
    """The hub's database cannot be opened or used."""


class Database:
    """One connection (SQLite or PostgreSQL) shared by threads under a lock.

    Use :meth:`transaction` for writes (commits on success, rolls back on an
    exception) and :meth:`query` / :meth:`one` for reads.
    """

    def __init__(self, conn: Any, dialect: str, where: str, reconnect: Callable[[], Any] | None = None):
        self._conn = conn
        self.dialect = dialect
        self.where = where
        self._reconnect = reconnect
        self._lock = threading.RLock()
        self._depth = 0

    def _connection(self) -> Any:
        """The connection, opened again first when a server connection was lost (PostgreSQL)."""
        if self._reconnect is not None and not self._depth and getattr(self._conn, "closed", False):
            log.warning("connection to %s was lost; reconnecting", self.where)
            self._conn = self._reconnect()
        return self._conn

    # -- SQL text

    def sql(self, text: str) -> str:
        """``text`` with placeholders in this dialect's style."""
        return text.replace("?", "%s") if self.dialect == "postgresql" else text

    # -- use

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """A write transaction; nested calls join the outer one."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            self._begin()
            self._depth = 1
            try:
                yield self
            except BaseException:
                self._depth = 0
                self._rollback()
                raise
            self._depth = 0
            self._commit()

    def execute(self, text: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        with self._lock:
            cur = self._connection().execute(self.sql(text), tuple(params))
            return cur.rowcount

    def query(self, text: str, params: Sequence[Any] = ()) -> list[tuple]:
        """All rows of a query."""
        with self._lock:
            cur = self._connection().execute(self.sql(text), tuple(params))
            return [tuple(r) for r in cur.fetchall()]

    def one(self, text: str, params: Sequence[Any] = ()) -> tuple | None:
        """The first row of a query, or None."""
        with self._lock:
            row = self._connection().execute(self.sql(text), tuple(params)).fetchone()
            return tuple(row) if row is not None else None

    @contextmanager
    def pipeline(self) -> Iterator[None]:
        """PostgreSQL: send the statements inside without waiting for each result (psycopg's pipeline
        mode; results are read at the end); SQLite: nothing changes. Use inside :meth:`transaction`."""
        if self.dialect != "postgresql":
            yield
            return
        with self._lock, self._connection().pipeline():
            yield

    def table_exists(self, name: str) -> bool:
        """True when a table of that name exists (in PostgreSQL: on the search path)."""
        if self.dialect == "sqlite":
            return self.one("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)) is not None
        return self.one("SELECT to_regclass(?)", (name,))[0] is not None  # type: ignore[index]

    def script(self, statements: str) -> None:
        """Run several ``;``-separated statements (schema creation) in one transaction."""
        with self.transaction():
            for stmt in statements.split(";"):
                if stmt.strip():
                    self.execute(stmt)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    # -- dialect specifics

    def _begin(self) -> None:
        # both connections run in autocommit mode; transactions are explicit
        self._connection().execute("BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN")

    def _commit(self) -> None:
        self._conn.execute("COMMIT")

    def _rollback(self) -> None:
        try:
            self._conn.execute("ROLLBACK")
        except Exception:  # noqa: BLE001 - the original error matters more
            pass


def open_database(url: str | Path) -> Database:
    """Open the hub database at ``url`` (a path, ``sqlite:///PATH``, ``:memory:`` or ``postgresql://...``)."""
    text = str(url)
    if text.startswith(("postgresql://", "postgres://")):
        return _open_postgresql(text)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///"):] or ":memory:"
    elif "://" in text:
        raise DatabaseError(f"unsupported database URL {text!r}: give a SQLite file path or postgresql://...")
    return _open_sqlite(text)


def _open_sqlite(path: str) -> Database:
    try:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30.0)
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed transaction survives the process being killed
        conn.execute("PRAGMA synchronous=NORMAL")
    except (sqlite3.Error, OSError) as exc:
        raise DatabaseError(f"cannot open SQLite database {path}: {exc}") from None
    return Database(conn, "sqlite", path)


def _open_postgresql(url: str) -> Database:
    try:
        import psycopg
    except ImportError:
        raise DatabaseError("PostgreSQL needs psycopg 3: pip install 'storesense[postgres]'") from None
    shown = _redact(url)

    def connect():
        try:
            return psycopg.connect(url, connect_timeout=5, autocommit=True)
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DatabaseError(f"cannot connect to PostgreSQL at {shown}: {reason}") from None

    return Database(connect(), "postgresql", shown, reconnect=connect)


def _redact(url: str) -> str:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        if parts.password:
            return url.replace(f":{parts.password}@", ":***@", 1)
    except ValueError:
        pass
    return url
