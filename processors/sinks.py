"""Where results persist: one small blob per session, replaceable and erasable.

SQLite (standard library) by default, Airtable when configured. Both libraries block, so every
call runs in a worker thread (``streams.threads``; Airtable in its own small pool, since its
calls wait for the rate limit) and the event loop never waits on a disk or a network. Writes are
keyed on the session id: a job processed twice (at-least-once delivery) leaves exactly one
result, the last one.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol, TypeVar

import requests
from requests.adapters import HTTPAdapter

from schemas.result import MAX_RESULT_BYTES
from streams.config import setting
from streams.threads import in_pool, in_thread, pool

T = TypeVar("T")

AIRTABLE_ENDPOINT = "https://api.airtable.com"
AIRTABLE_SERVER_ERRORS = (500, 502, 503, 504)
AIRTABLE_REQUESTS_PER_S = 5
AIRTABLE_LOCK_S = 30.0
"""Airtable: 5 requests per second per base; past that, 429 and the base is locked for 30 s."""
SESSION_FIELD, RESULT_FIELD, CREATED_FIELD = "session_id", "result", "created_at"


class SinkError(Exception):
    """The result store failed; ``retryable`` says whether trying again later may succeed."""

    def __init__(self, message: str, *, retryable: bool = True, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        """Seconds the store asked to wait before the next request, when it said."""


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
        return await in_thread(self._in_thread, statement)

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


class RequestPacer:
    """At most ``per_second`` requests begin in any ``window_s`` (plus a margin for the network):
    Airtable allows 5 requests per second per base and locks the base for 30 s beyond that.

    One pacer per base for the whole process, so the gateway's reads and the workers' writes share
    the budget. Processes do not share it: a 429 from another process is still waited out."""

    def __init__(self, per_second: int = AIRTABLE_REQUESTS_PER_S, window_s: float = 1.1) -> None:
        self.window_s = window_s
        self._starts: deque[float] = deque(maxlen=per_second)
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            if len(self._starts) == self._starts.maxlen:
                delay = self._starts[0] + self.window_s - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            self._starts.append(time.monotonic())


_pacers: dict[tuple[str, str], RequestPacer] = {}
_pacers_lock = threading.Lock()


def pacer_for(endpoint: str, base_id: str) -> RequestPacer:
    with _pacers_lock:
        return _pacers.setdefault((endpoint, base_id), RequestPacer())


class _PacedAdapter(HTTPAdapter):
    """Every HTTP request pyairtable sends (pages of a listing included) waits for the base's pacer."""

    def __init__(self, pacer: RequestPacer, **options: Any) -> None:
        super().__init__(**options)
        self.pacer = pacer

    def send(self, request: requests.PreparedRequest, **options: Any) -> requests.Response:  # type: ignore[override]
        self.pacer.wait()
        return super().send(request, **options)


class AirtableSink:
    """Results in an Airtable table with fields ``session_id`` and ``result`` (text) and ``created_at``.

    Writes are upserts merged on ``session_id``. Requests are paced to Airtable's 5 per second per
    base. A 429 is not retried here: Airtable locks the base for 30 s after one, so the error says
    how long to wait (``Retry-After`` when sent, ``lock_s`` otherwise) and the caller's queue
    (``processors.delivery``) waits it out. 5xx are retried a few times with backoff; a 422 (a value
    the table's column refuses) is a configuration error, not retried.
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
        lock_s: float = AIRTABLE_LOCK_S,
    ) -> None:
        from pyairtable import Api, retry_strategy  # here, not at import: SQLite is the default sink

        retry = retry_strategy(
            status_forcelist=AIRTABLE_SERVER_ERRORS,
            total=retries,
            backoff_factor=backoff_s,
            raise_on_status=False,
            respect_retry_after_header=False,
        )
        endpoint = endpoint_url or AIRTABLE_ENDPOINT
        self.lock_s = lock_s
        self._api = Api(api_key, timeout=timeout, retry_strategy=retry, endpoint_url=endpoint)
        adapter = _PacedAdapter(pacer_for(endpoint, base_id), max_retries=retry)
        self._api.session.mount("https://", adapter)
        self._api.session.mount("http://", adapter)
        self._table = self._api.table(base_id, table)
        self._threads = pool(AIRTABLE_REQUESTS_PER_S, "airtable")

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

    async def schema_problems(self) -> list[str]:
        """What is wrong with the table for this sink (missing fields, wrong types); empty when fit."""

        def check() -> list[str]:
            try:
                schema = self._table.schema(force=True)
            except KeyError:
                return [f"the base has no table {self._table.name!r}"]
            fields = {field.name: str(getattr(field.type, "value", field.type)) for field in schema.fields}
            return table_problems(fields)

        return await self._run(check)

    async def close(self) -> None:
        await in_thread(self._api.session.close)
        self._threads.shutdown(wait=False)

    async def _run(self, call: Callable[[], T]) -> T:
        from pyairtable.exceptions import PyAirtableError

        try:
            return await in_pool(self._threads, call)
        except requests.HTTPError as exc:
            raise self._error(exc) from exc
        except requests.RequestException as exc:
            raise SinkError(f"Airtable unreachable: {exc}", retryable=True) from exc
        except (PyAirtableError, KeyError, TypeError, ValueError) as exc:
            raise SinkError(f"Airtable: unexpected answer ({exc})", retryable=False) from exc

    def _error(self, exc: requests.HTTPError) -> SinkError:
        status = exc.response.status_code if exc.response is not None else 0
        detail = "; ".join(str(arg) for arg in exc.args)
        retry_after = _retry_after(exc.response)
        if status == 429:
            wait = self.lock_s if retry_after is None else retry_after
            return SinkError(f"Airtable: rate limited, the base is locked for {wait:g} s ({detail})",
                             retryable=True, retry_after=wait)
        if status == 422:
            return SinkError(f"Airtable refused the value for a column (422): {detail}; "
                             "check the table's fields with `dodolens doctor`", retryable=False)
        retryable = status in AIRTABLE_SERVER_ERRORS or status in (408, 409)
        return SinkError(f"Airtable: {detail}", retryable=retryable, retry_after=retry_after)


REQUIRED_FIELDS: dict[str, frozenset[str]] = {
    SESSION_FIELD: frozenset({"singleLineText", "multilineText"}),
    RESULT_FIELD: frozenset({"multilineText"}),
    CREATED_FIELD: frozenset({"singleLineText", "multilineText", "dateTime"}),
}
"""The fields the Airtable sink writes and the column types that take its values unchanged."""


def table_problems(fields: dict[str, str]) -> list[str]:
    """The table's fields (name -> Airtable type) against what the sink writes (pure)."""
    problems = []
    for name, types in REQUIRED_FIELDS.items():
        if name not in fields:
            problems.append(f"the table has no field {name!r} (one of: {', '.join(sorted(types))})")
        elif fields[name] not in types:
            problems.append(f"field {name!r} is {fields[name]}, the sink needs one of: {', '.join(sorted(types))}")
    return problems


def _retry_after(response: requests.Response | None) -> float | None:
    """Seconds from a ``Retry-After`` header given in seconds, or None."""
    value = None if response is None else response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class SinkConfig:
    """Where results go: Airtable when its key and base are set, a SQLite file otherwise."""

    airtable_api_key: str | None = setting("AIRTABLE_API_KEY", None, "key of the Airtable API",
                                           shown="unset → SQLite", secret=True)
    airtable_base_id: str | None = setting("DODOLENS_AIRTABLE_BASE_ID", None, "Airtable base of the results",
                                           shown="unset → SQLite")
    airtable_table: str = setting("DODOLENS_AIRTABLE_TABLE", "results", "Airtable table of the results")
    airtable_endpoint: str | None = setting("DODOLENS_AIRTABLE_ENDPOINT", None,
                                            "another Airtable API address", shown="unset → api.airtable.com")
    airtable_lock_s: float = setting("DODOLENS_AIRTABLE_LOCK", AIRTABLE_LOCK_S, "seconds to wait after an Airtable "
                                     "429 that announces no `Retry-After` (Airtable locks the base for 30 s)")
    results_db: str = setting("DODOLENS_RESULTS_DB", "dodolens-results.sqlite3", "SQLite file for results")


def open_sink(config: SinkConfig) -> ResultSink:
    """Airtable when its key and base are both set, the SQLite file otherwise; half a configuration is an error."""
    if bool(config.airtable_api_key) != bool(config.airtable_base_id):
        raise ValueError("Airtable needs both AIRTABLE_API_KEY and a base id (DODOLENS_AIRTABLE_BASE_ID), or neither")
    if config.airtable_api_key and config.airtable_base_id:
        return AirtableSink(config.airtable_api_key, config.airtable_base_id, config.airtable_table,
                            endpoint_url=config.airtable_endpoint, lock_s=config.airtable_lock_s)
    return SQLiteSink(config.results_db)
