"""Where results persist: one small blob per session, replaceable and erasable.

SQLite (standard library) by default, Airtable when configured. Both libraries block, so every
call runs in a worker thread (``asyncio.to_thread``) and the event loop never waits on a disk or
a network. Writes are keyed on the session id: a job processed twice (at-least-once delivery)
leaves exactly one result, the last one.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import closing
from datetime import datetime, timezone
from typing import Protocol, TypeVar

from schemas.result import MAX_RESULT_BYTES

T = TypeVar("T")

AIRTABLE_ENDPOINT = "https://api.airtable.com"
AIRTABLE_RETRY_STATUSES = (429, 500, 502, 503, 504)
SESSION_FIELD, RESULT_FIELD, CREATED_FIELD = "session_id", "result", "created_at"


class SinkError(Exception):
    """The result store failed; ``retryable`` says whether trying again later may succeed."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class ResultSink(Protocol):
    async def put(self, session_id: str, blob: bytes) -> None:
        """Store the session's result, replacing any previous one: one result per session."""

    async def get(self, session_id: str) -> bytes | None: ...

    async def delete(self, session_id: str) -> bool:
        """Erase the session's result; False when there was none."""

    async def close(self) -> None: ...


def _check_blob(blob: bytes) -> None:
    if not isinstance(blob, bytes):
        raise SinkError(f"a result is bytes, not {type(blob).__name__}", retryable=False)
    if len(blob) > MAX_RESULT_BYTES:
        raise SinkError(f"a result is at most {MAX_RESULT_BYTES} bytes, got {len(blob)}", retryable=False)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class SQLiteSink:
    """Results in one local SQLite file; a connection per call, so threads and processes can share it."""

    def __init__(self, path: str | os.PathLike[str], *, timeout_s: float = 5.0) -> None:
        self.path = os.fspath(path)
        self.timeout_s = timeout_s
        self._ready = False
        self._ready_lock = threading.Lock()

    async def put(self, session_id: str, blob: bytes) -> None:
        _check_blob(blob)
        await self._run(
            lambda db: db.execute(
                "INSERT INTO results (session_id, result, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (session_id) DO UPDATE SET result = excluded.result, created_at = excluded.created_at",
                (session_id, blob, _now()),
            )
        )

    async def get(self, session_id: str) -> bytes | None:
        row = await self._run(
            lambda db: db.execute("SELECT result FROM results WHERE session_id = ?", (session_id,)).fetchone()
        )
        return None if row is None else bytes(row[0])

    async def delete(self, session_id: str) -> bool:
        deleted = await self._run(
            lambda db: db.execute("DELETE FROM results WHERE session_id = ?", (session_id,)).rowcount
        )
        return deleted > 0

    async def close(self) -> None:
        """Nothing stays open between calls."""

    async def _run(self, statement: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self._in_thread, statement)

    def _in_thread(self, statement: Callable[[sqlite3.Connection], T]) -> T:
        """Run one statement in its own connection and transaction.

        Several workers may share the file. SQLite waits ``timeout_s`` for a lock in most cases but
        answers "locked" at once in some (a journal-mode switch, a read transaction that must
        become a write): those are retried until the same deadline.
        """
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                self._create_table()
                with closing(sqlite3.connect(self.path, timeout=self.timeout_s)) as db, db:
                    return statement(db)
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                raise SinkError(f"SQLite {self.path}: {exc}", retryable=True) from exc
            except sqlite3.Error as exc:
                raise SinkError(f"SQLite {self.path}: {exc}", retryable=False) from exc

    def _create_table(self) -> None:
        with self._ready_lock:
            if self._ready:
                return
            with closing(sqlite3.connect(self.path, timeout=self.timeout_s)) as db, db:
                if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    db.execute("PRAGMA journal_mode = WAL")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS results "
                    "(session_id TEXT PRIMARY KEY, result BLOB NOT NULL, created_at TEXT NOT NULL)"
                )
            self._ready = True


class AirtableSink:
    """Results in an Airtable table with text fields ``session_id``, ``result`` and ``created_at``.

    Writes are upserts merged on ``session_id``. pyairtable retries only 429 by default; here 429
    and 5xx are retried with backoff, honouring ``Retry-After`` (urllib3 does, for 429 and 503)
    up to ``retry_after_max_s``, and what still fails becomes a ``SinkError``.
    """

    def __init__(
        self,
        api_key: str,
        base_id: str,
        table: str,
        *,
        endpoint_url: str | None = None,
        timeout: tuple[float, float] = (5.0, 20.0),
        retries: int = 3,
        backoff_s: float = 0.5,
        retry_after_max_s: int = 30,
    ) -> None:
        from pyairtable import Api, retry_strategy  # here, not at import: SQLite is the default sink

        retry = retry_strategy(
            status_forcelist=AIRTABLE_RETRY_STATUSES,
            total=retries,
            backoff_factor=backoff_s,
            raise_on_status=False,
            retry_after_max=retry_after_max_s,
        )
        self._api = Api(api_key, timeout=timeout, retry_strategy=retry, endpoint_url=endpoint_url or AIRTABLE_ENDPOINT)
        self._table = self._api.table(base_id, table)

    async def put(self, session_id: str, blob: bytes) -> None:
        _check_blob(blob)
        try:
            text = blob.decode("utf-8")
        except UnicodeDecodeError:
            raise SinkError("Airtable stores text: a result must be UTF-8 JSON", retryable=False) from None
        fields = {SESSION_FIELD: session_id, RESULT_FIELD: text, CREATED_FIELD: _now()}
        await self._run(lambda: self._table.batch_upsert([{"fields": fields}], key_fields=[SESSION_FIELD]))

    async def get(self, session_id: str) -> bytes | None:
        from pyairtable.formulas import match

        record = await self._run(lambda: self._table.first(formula=match({SESSION_FIELD: session_id})))
        text = None if record is None else record["fields"].get(RESULT_FIELD)
        return None if text is None else str(text).encode("utf-8")

    async def delete(self, session_id: str) -> bool:
        """Deletes every record of the session (erasure must not leave a stray duplicate)."""

        from pyairtable.formulas import match

        def erase() -> bool:
            records = self._table.all(formula=match({SESSION_FIELD: session_id}), fields=[SESSION_FIELD])
            if records:
                self._table.batch_delete([record["id"] for record in records])
            return bool(records)

        return await self._run(erase)

    async def close(self) -> None:
        await asyncio.to_thread(self._api.session.close)

    async def _run(self, call: Callable[[], T]) -> T:
        import requests
        from pyairtable.exceptions import PyAirtableError

        try:
            return await asyncio.to_thread(call)
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            retryable = status in AIRTABLE_RETRY_STATUSES or status in (408, 409)
            detail = "; ".join(str(arg) for arg in exc.args)
            raise SinkError(f"Airtable: {detail}", retryable=retryable) from exc
        except requests.RequestException as exc:
            raise SinkError(f"Airtable unreachable: {exc}", retryable=True) from exc
        except (PyAirtableError, KeyError, TypeError, ValueError) as exc:
            raise SinkError(f"Airtable: unexpected answer ({exc})", retryable=False) from exc


def open_sink(
    *,
    airtable_api_key: str | None,
    airtable_base_id: str | None,
    airtable_table: str | None,
    airtable_endpoint: str | None,
    sqlite_path: str,
) -> ResultSink:
    """Airtable when its key and base are both set, the SQLite file otherwise; half a configuration is an error."""
    if bool(airtable_api_key) != bool(airtable_base_id):
        raise ValueError("Airtable needs both AIRTABLE_API_KEY and a base id (DODOLENS_AIRTABLE_BASE_ID), or neither")
    if airtable_api_key and airtable_base_id:
        return AirtableSink(
            airtable_api_key, airtable_base_id, airtable_table or "results", endpoint_url=airtable_endpoint
        )
    return SQLiteSink(sqlite_path)
