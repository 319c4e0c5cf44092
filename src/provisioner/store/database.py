"""Database connections: SQLite (embedded default) or PostgreSQL, one interface.

Writes are plain synchronous functions of a SQLAlchemy ``Connection`` run in one transaction by
``Database.transaction``:

- on SQLite, on one connection whose transactions open with ``BEGIN IMMEDIATE``, in a
  dedicated writer thread: a whole transaction costs one hop between threads (through the async
  driver each statement would), writes queue in the process instead of failing with "database
  is locked", and WAL mode with ``synchronous=FULL`` makes a committed change survive a crash
  or a power cut. A transaction known to be small (``inline``) runs on the caller's thread
  instead when the connection is free: its statements and commit take less than the two hops
  and the wait for the interpreter lock that the thread would cost (see ``transaction``).
  Checkpoints (copying the WAL back into the database file, with its fsync) run in a thread
  of their own (``_Checkpointer``), not inside whichever commit crosses SQLite's threshold;
- on PostgreSQL, through the async driver (``run_sync``), without a thread; a write that is
  one statement (``fetch``, asyncpg) runs straight on the driver, on a connection held for it.

Reads are async, on a pool of their own, so that a status read never waits for a connection
behind a burst of submissions or engine writes, and in autocommit mode: a read is its
statements' round trips, with no BEGIN and ROLLBACK around them. Connection failures surface as
``DatabaseUnavailableError`` so callers can retry or answer 503. Every engine hides statement
parameters from its exception messages: they hold adapters' ``privateInfo``, and exceptions are
logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Dialect, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from provisioner.errors import DatabaseUnavailableError, UnstorableValueError

T = TypeVar("T")

SQLITE_PRAGMAS = ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=30000", "foreign_keys=ON")
# The writer's own checkpoints, a backstop for when the checkpointer falls behind: at this many
# WAL pages (40 MiB at 4 KiB pages; SQLite's default is 1,000) its commit checkpoints inline.
WRITER_AUTOCHECKPOINT_PAGES = 10_000


class Database:
    """The engines of one database, its write transactions and its reads."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        read_pool_size: int = 5,
        idle_transaction_timeout_seconds: float | None = None,
    ) -> None:
        """``idle_transaction_timeout_seconds`` (PostgreSQL): how long a write transaction may
        wait for its next statement before the server ends the session (see
        ``_idle_transaction_limit``)."""
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self._writer: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._async_writer: AsyncEngine | None = None
        self._held: Connection | None = None  # the SQLite writer's connection
        # asyncpg: the connection that runs ``fetch``'s statements, and who is using it.
        self._statements: AsyncConnection | None = None
        self._statements_driver: Any = None  # its asyncpg.Connection
        self._statements_doubtful = False  # a statement on it was cancelled half-way
        self._statements_lock = asyncio.Lock()
        self._holding = threading.Lock()  # taken by whichever thread runs a transaction on it
        self._checkpointer: _Checkpointer | None = None
        if self.is_sqlite:
            self._writer = _sqlite_engine(self.url.set(drivername="sqlite"))
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
            path = self.url.database
            if path and path != ":memory:" and not path.startswith("file:"):
                self._checkpointer = _Checkpointer(path)
            self._reader = create_async_engine(
                url,
                pool_size=read_pool_size,
                max_overflow=0,
                pool_timeout=60,
                pool_reset_on_return=None,
                hide_parameters=True,
            )
            _configure_sqlite(self._reader.sync_engine, begin=None)
        else:
            self._async_writer = create_async_engine(
                url,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_recycle=1800,
                hide_parameters=True,
                connect_args=_idle_transaction_limit(self.url, idle_transaction_timeout_seconds),
            )
            self._reader = create_async_engine(
                url,
                pool_size=read_pool_size,
                max_overflow=read_pool_size,
                pool_recycle=1800,
                isolation_level="AUTOCOMMIT",
                pool_reset_on_return=None,
                hide_parameters=True,
            )

    async def transaction(self, work: Callable[[Connection], T], *, inline: bool = False) -> T:
        """Run ``work(connection)`` in one write transaction; commit if it returns.

        ``inline`` (SQLite): ``work`` is a few rows' statements; if no other transaction holds
        the connection, run it on this thread rather than the writer's, blocking the event
        loop for its statements and commit (about a millisecond, fsync included). Handing it to
        the thread cost more: a hop there and back, and a wait for the interpreter lock while
        the loop ran Python (0.6 ms of a chain step's 2.8 ms beyond its adapter call).
        """
        if self._thread is not None:
            if inline and self._holding.acquire(blocking=False):
                try:
                    return self._run_held(work)
                finally:
                    self._holding.release()
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._thread, self._in_writer_thread, work)
        assert self._async_writer is not None
        with _translated():
            async with self._async_writer.begin() as connection:
                result: T = await connection.run_sync(work)
                return result

    @property
    def dialect(self) -> Dialect:
        """The dialect of the engine that writes."""
        engine = self._writer if self._writer is not None else self._async_writer
        assert engine is not None
        return engine.dialect

    async def fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """asyncpg: run one statement of the driver's own SQL (``$n`` parameters) in
        autocommit; the rows it returns.

        A single statement is atomic by itself: it commits when it ends, with no BEGIN and
        COMMIT round trips around it, and a failure leaves nothing of it behind. It runs on a
        connection held for such statements, straight on asyncpg: a checkout from the pool and
        the execution through SQLAlchemy's adapter cost 0.6-0.9 ms of the event loop per
        statement, more than the statement's round trip. Errors are translated as
        ``transaction``'s are; a connection that failed is replaced.
        """
        assert self._async_writer is not None, "SQLite writes go through transaction()"
        async with self._statements_lock:
            driver = await self._statements_connection()
            try:
                return [tuple(row) for row in await driver.fetch(sql, *params)]
            except asyncio.CancelledError:
                self._statements_doubtful = True  # replaced before its next statement
                raise
            except Exception as exc:
                error = _driver_error(exc)
                if isinstance(error, DatabaseUnavailableError):
                    await self._close_statements_connection()
                if error is exc:
                    raise
                raise error from exc

    async def _statements_connection(self) -> Any:
        """The asyncpg connection ``fetch`` runs on, checked out of the writer's pool (with
        its settings) once and held."""
        if self._statements is not None and (
            self._statements_doubtful or self._statements_driver.is_closed()
        ):
            await self._close_statements_connection()
        if self._statements is None:
            assert self._async_writer is not None
            with _translated():
                connection = await self._async_writer.connect()
                try:
                    raw = await connection.get_raw_connection()
                except BaseException:
                    await connection.close()
                    raise
            self._statements = connection
            self._statements_driver = raw.driver_connection
        return self._statements_driver

    async def _close_statements_connection(self, *, broken: bool = True) -> None:
        """Give back the held connection: discarded when ``broken`` (or in doubt), to the pool
        otherwise."""
        held, self._statements = self._statements, None
        self._statements_doubtful = False
        if held is not None:
            if broken:
                with contextlib.suppress(Exception):
                    await held.invalidate()
            with contextlib.suppress(Exception):
                await held.close()

    def _in_writer_thread(self, work: Callable[[Connection], T]) -> T:
        with self._holding:
            return self._run_held(work)

    def _run_held(self, work: Callable[[Connection], T]) -> T:
        """``work`` in a transaction on the writer's connection (``_holding`` is taken)."""
        with _translated():
            connection = self._writer_connection()
            try:
                with connection.begin():
                    result = work(connection)
                if self._checkpointer is not None:
                    self._checkpointer.committed()
                return result
            except BaseException:
                # Rolled back, the connection serves the next transaction (a refused
                # submission is an exception too); a broken one is replaced.
                if connection.invalidated or connection.in_transaction():
                    self._close_writer_connection()
                raise

    def _writer_connection(self) -> Connection:
        """The writer's connection, held between transactions: a checkout from the pool and
        its reset on return cost more than a small transaction's statements. It is used by
        one thread at a time (``_holding``), not always the same one."""
        if self._held is None:
            assert self._writer is not None
            self._held = self._writer.connect()
        return self._held

    def _close_writer_connection(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            with contextlib.suppress(Exception):
                held.close()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction."""
        with _translated():
            async with self._reader.connect() as connection:
                yield connection

    async def dispose(self) -> None:
        if self._checkpointer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._checkpointer.stop)
        if self._thread is not None and self._writer is not None:
            # Closed in the writer thread, after any transaction already handed to it.
            writer = self._writer

            def close() -> None:
                with self._holding:
                    self._close_writer_connection()
                writer.dispose()

            await asyncio.get_running_loop().run_in_executor(self._thread, close)
            self._thread.shutdown(wait=True)
        if self._async_writer is not None:
            async with self._statements_lock:
                await self._close_statements_connection(broken=False)
            await self._async_writer.dispose()
        await self._reader.dispose()


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except (OperationalError, InterfaceError, PoolTimeoutError, OSError) as exc:
        raise DatabaseUnavailableError(_first_line(exc)) from exc
    except DBAPIError as exc:
        sqlstate = _sqlstate(exc)
        if exc.connection_invalidated or sqlstate.startswith(_UNAVAILABLE_SQLSTATES):
            raise DatabaseUnavailableError(_first_line(exc)) from exc
        if sqlstate.startswith("22"):  # data exception: the value, not the database, is wrong
            raise _unstorable(exc.orig or exc) from exc
        raise


# PostgreSQL's connection exceptions (class 08) and operator intervention (57P01 admin
# shutdown, 57P02 crash shutdown, 57P03 cannot connect now: "the database system is starting
# up"): the server is going away or not there yet, and retrying later is the cure.
_UNAVAILABLE_SQLSTATES = ("08", "57P")


def _unstorable(exc: BaseException) -> UnstorableValueError:
    return UnstorableValueError(f"a value cannot be stored: {_first_line(exc)}")


def _driver_error(exc: Exception) -> Exception:
    """What ``_translated`` makes of an error asyncpg raised (``fetch``): the statement refused
    by the server (raised as it is, or ``UnstorableValueError`` for a value it cannot store),
    or anything else, which leaves the connection in doubt (``DatabaseUnavailableError``)."""
    from asyncpg import exceptions as asyncpg_errors

    sqlstate = str(getattr(exc, "sqlstate", None) or "")
    if isinstance(exc, asyncpg_errors.DataError) or sqlstate.startswith("22"):
        # A value the driver cannot encode, or one the server refuses (data exception).
        return _unstorable(exc)
    refused = isinstance(exc, asyncpg_errors.PostgresError)  # an error the server sent
    if refused and not sqlstate.startswith(_UNAVAILABLE_SQLSTATES):
        return exc
    # Closed, ended by the server, or its protocol out of step (asyncpg's InternalClientError
    # after the server ended the session between two statements).
    return DatabaseUnavailableError(_first_line(exc))


def driver_execute(
    conn: Connection, sql: str, rows: list[tuple[Any, ...]]
) -> list[tuple[Any, ...]]:
    """Run ``sql`` (driver SQL, positional parameters) on the driver's own cursor of
    ``conn``'s connection, in its transaction; the rows it returns.

    SQLAlchemy's execution context (cursor wrapping, result set-up, per-call checks) costs
    more than a small statement costs the driver. Errors are raised as SQLAlchemy
    would raise them, parameters hidden, and a connection the driver reports lost is
    invalidated, as ``Connection.execute`` does.
    """
    dialect = conn.dialect
    dbapi_connection = conn.connection.dbapi_connection
    assert dbapi_connection is not None
    cursor = dbapi_connection.cursor()
    try:
        if len(rows) == 1:
            cursor.execute(sql, rows[0])
        else:
            cursor.executemany(sql, rows)
        return [tuple(row) for row in cursor.fetchall()] if cursor.description else []
    except dialect.loaded_dbapi.Error as exc:
        lost = dialect.is_disconnect(exc, dbapi_connection, cursor)
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(
            sql,
            rows,
            exc,
            dialect.loaded_dbapi.Error,
            hide_parameters=True,
            connection_invalidated=lost,
            dialect=dialect,
            ismulti=len(rows) > 1,
        ) from exc
    finally:
        cursor.close()


def _idle_transaction_limit(url: Any, seconds: float | None) -> dict[str, Any]:
    """Connection arguments that make the server end a write session idle in a transaction.

    A write transaction waits on nothing but the database (never on an adapter), so one that
    sits idle is a replica that is paused (SIGSTOP, a GC or VM pause) or cut off. Its row locks
    would outlive its lease: claims skip locked rows (``FOR UPDATE SKIP LOCKED``), so no other
    replica could take its operation over until it woke up. Past the limit the server ends the
    session and releases the locks; the replica, if it wakes, gets a connection error (retried
    as ``DatabaseUnavailableError``) and finds its fence taken.
    """
    if seconds is None:
        return {}
    milliseconds = max(1, round(seconds * 1000))
    if url.get_driver_name() == "psycopg":
        return {"options": f"-c idle_in_transaction_session_timeout={milliseconds}"}
    return {"server_settings": {"idle_in_transaction_session_timeout": str(milliseconds)}}


def _sqlstate(exc: DBAPIError) -> str:
    for error in (exc.orig, getattr(exc.orig, "__cause__", None)):
        code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        if isinstance(code, str):
            return code
    return ""


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


class _Checkpointer:
    """SQLite's WAL checkpoints, in a thread of their own, on a connection of their own.

    SQLite checkpoints by default inside the commit that takes the WAL past 1,000 pages: that
    commit then copies the WAL into the database file and fsyncs it, on the event loop for an
    inline transaction (measured: 2 to 19 ms, where a commit takes 0.5). Here, once a write has
    committed since it last looked, a thread runs a PASSIVE checkpoint every ``interval``
    seconds: it copies what no reader still needs and never blocks the writer. The writer
    keeps checkpointing itself, at ``WRITER_AUTOCHECKPOINT_PAGES``, should this one fall behind.
    The thread starts with the first commit, so that a ``Database`` that never writes has none.
    """

    def __init__(self, path: str, *, interval: float = 0.25) -> None:
        self._path = path
        self._interval = interval
        self._commits = 0  # bumped by the writer; read here as a hint only
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()

    def committed(self) -> None:
        self._commits += 1
        if self._thread is None:
            with self._starting:
                if self._thread is None and not self._stopping.is_set():
                    self._thread = threading.Thread(
                        target=self._run, name="sqlite-checkpointer", daemon=True
                    )
                    self._thread.start()

    def stop(self) -> None:
        """Stop the thread once its checkpoint in progress, if any, has ended."""
        self._stopping.set()
        with self._starting:
            thread = self._thread
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        connection = sqlite3.connect(self._path, timeout=30, isolation_level=None)
        try:
            for pragma in SQLITE_PRAGMAS:
                connection.execute(f"PRAGMA {pragma}")
            seen = 0
            while not self._stopping.wait(self._interval):
                if self._commits == seen:
                    continue
                seen = self._commits
                with contextlib.suppress(sqlite3.Error):  # busy, or the file went: next time
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            connection.close()


def _sqlite_engine(url: Any) -> Engine:
    # One connection, used by one thread at a time but not always the same (``_holding``).
    connect_args = {"timeout": 30, "check_same_thread": False}
    engine = create_engine(
        url, pool_size=1, max_overflow=0, connect_args=connect_args, hide_parameters=True
    )
    _configure_sqlite(engine, begin="BEGIN IMMEDIATE")

    @event.listens_for(engine, "connect")
    def _checkpoint_rarely(dbapi_connection: Any, _record: Any) -> None:
        # Checkpoints are the checkpointer's (``_Checkpointer``); this is the backstop.
        dbapi_connection.execute(f"PRAGMA wal_autocheckpoint={WRITER_AUTOCHECKPOINT_PAGES}")

    return engine


def _configure_sqlite(engine: Engine, *, begin: str | None) -> None:
    """Pragmas on every connection; ``begin`` opens each transaction (None: autocommit)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so that BEGIN can be IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    if begin is not None:

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            driver_execute(connection, begin, [()])
