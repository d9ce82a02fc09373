"""Result sinks: one result per session, replaceable, erasable; SQLite by default, Airtable over real HTTP."""

from __future__ import annotations

import asyncio
import threading
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from processors.sinks import AirtableSink, ResultSink, SinkError, SQLiteSink, open_sink
from schemas.result import MAX_RESULT_BYTES
from tests.support.fake_airtable import FakeAirtable
from tests.support.fake_openai import LocalServer

BLOB = b'{"v":1,"session_id":"s1","inventory":{"r":[["Salon",[4242,2,90,3]]]}}'


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer(FakeAirtable().app) as running:
        yield running


@pytest.fixture
def airtable(server: LocalServer) -> FakeAirtable:
    """A fresh, empty Airtable for each test, behind the module's server."""
    server.app = (fresh := FakeAirtable()).app
    return fresh


@pytest.fixture
def airtable_url(server: LocalServer, airtable: FakeAirtable) -> str:
    return server.url


def airtable_sink(airtable: FakeAirtable, url: str, **options) -> AirtableSink:
    options.setdefault("backoff_s", 0.01)
    return AirtableSink(airtable.api_key, airtable.base_id, airtable.table, endpoint_url=url, **options)


@pytest.fixture(params=["sqlite", "airtable"])
async def sink(request, tmp_path: Path) -> AsyncIterator[ResultSink]:
    if request.param == "sqlite":
        store: ResultSink = SQLiteSink(tmp_path / "results.sqlite3")
    else:
        store = airtable_sink(request.getfixturevalue("airtable"), request.getfixturevalue("airtable_url"))
    yield store
    await store.close()


# The contract, for every sink


async def test_a_result_put_is_got_back(sink):
    await sink.put("s1", BLOB)
    assert await sink.get("s1") == BLOB


async def test_an_unknown_session_has_no_result(sink):
    assert await sink.get("nobody") is None


async def test_a_second_put_replaces_the_first(sink):
    await sink.put("s1", BLOB)
    await sink.put("s1", b'{"second":true}')
    assert await sink.get("s1") == b'{"second":true}'


async def test_delete_erases_only_that_session_and_says_whether_there_was_one(sink):
    await sink.put("s1", BLOB)
    await sink.put("s2", b"{}")
    assert await sink.delete("s1") is True
    assert await sink.get("s1") is None
    assert await sink.delete("s1") is False
    assert await sink.get("s2") == b"{}"


@pytest.mark.parametrize("session_id", ["o'brien", "back\\slash", "quote\"s", "{braces}", "é"])
async def test_session_ids_are_data_not_syntax(sink, session_id):
    await sink.put(session_id, BLOB)
    await sink.put("other", b"{}")
    assert await sink.get(session_id) == BLOB
    assert await sink.delete(session_id) is True
    assert await sink.get("other") == b"{}"


async def test_a_result_over_5_kb_is_refused_and_not_retryable(sink):
    with pytest.raises(SinkError) as caught:
        await sink.put("s1", b"x" * (MAX_RESULT_BYTES + 1))
    assert not caught.value.retryable
    assert await sink.get("s1") is None


async def test_a_result_is_bytes(sink):
    with pytest.raises(SinkError):
        await sink.put("s1", BLOB.decode())


# SQLite


def rows(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT session_id, result, created_at FROM results").fetchall()


async def test_sqlite_keeps_exactly_one_row_per_session_under_concurrent_puts(tmp_path):
    path = tmp_path / "results.sqlite3"
    sink = SQLiteSink(path)
    await asyncio.gather(*(sink.put("s1", b'{"n":%d}' % n) for n in range(20)))
    [(session_id, result, created_at)] = rows(path)
    assert session_id == "s1" and result.startswith(b'{"n":') and created_at.endswith("+00:00")


async def test_sqlite_results_outlive_the_process_that_wrote_them(tmp_path):
    path = tmp_path / "results.sqlite3"
    await SQLiteSink(path).put("s1", BLOB)
    assert await SQLiteSink(path).get("s1") == BLOB


async def test_sqlite_failures_are_sink_errors(tmp_path):
    sink = SQLiteSink(tmp_path / "missing-directory" / "results.sqlite3")
    with pytest.raises(SinkError, match="SQLite"):
        await sink.put("s1", BLOB)


# Airtable


async def test_airtable_upserts_on_the_session_id_field(airtable, airtable_url):
    sink = airtable_sink(airtable, airtable_url)
    await sink.put("s1", BLOB)
    await sink.put("s1", BLOB)
    [row] = airtable.rows(session_id="s1")
    assert row["result"] == BLOB.decode() and row["created_at"]
    writes = [r for r in airtable.requests if r.method == "PATCH"]
    assert len(writes) == 2
    assert writes[0].path == f"/v0/{airtable.base_id}/{airtable.table}"
    assert writes[0].json["performUpsert"] == {"fieldsToMergeOn": ["session_id"]}


async def test_airtable_erasure_removes_duplicates_made_by_hand(airtable, airtable_url):
    sink = airtable_sink(airtable, airtable_url)
    await sink.put("s1", BLOB)
    airtable.add({"session_id": "s1", "result": "{}"})
    assert await sink.delete("s1") is True
    assert airtable.rows(session_id="s1") == []


async def test_airtable_429_is_retryable_and_says_to_wait_out_the_30_s_lock(airtable, airtable_url):
    sink = airtable_sink(airtable, airtable_url)
    airtable.fail(429)
    with pytest.raises(SinkError, match="429") as caught:
        await sink.put("s1", BLOB)
    assert caught.value.retryable and caught.value.retry_after == 30
    assert len(airtable.requests) == 1, "a 429 is not retried inside the lock"
    with pytest.raises(SinkError, match="429"):
        await sink.get("s1")
    assert airtable.locked_until > airtable.clock() + 29, "a request during the lock starts it again"


async def test_airtable_429_with_retry_after_says_that_wait(airtable, airtable_url):
    sink = airtable_sink(airtable, airtable_url)
    airtable.fail(429, retry_after="7")
    with pytest.raises(SinkError) as caught:
        await sink.put("s1", BLOB)
    assert caught.value.retry_after == 7


async def test_airtable_requests_are_paced_to_5_per_second_per_base(airtable, airtable_url):
    sinks = [airtable_sink(airtable, airtable_url) for _ in range(2)]
    await asyncio.gather(*(sinks[n % 2].get(f"s{n}") for n in range(12)))
    assert airtable.rate_limited == []
    times = sorted(r.at for r in airtable.requests)
    assert all(later - earlier >= 1.0 for earlier, later in zip(times, times[5:]))


async def test_airtable_server_errors_are_retried_then_succeed(airtable, airtable_url):
    sink = airtable_sink(airtable, airtable_url)
    await sink.put("s1", BLOB)
    airtable.fail(500)
    airtable.fail(502)
    assert await sink.get("s1") == BLOB
    assert len([r for r in airtable.requests if r.method == "GET"]) == 3


async def test_airtable_server_errors_left_after_retries_are_retryable_sink_errors(airtable, airtable_url):
    sink = airtable_sink(airtable, airtable_url, retries=2)
    airtable.fail(503, times=3)
    with pytest.raises(SinkError, match="503") as caught:
        await sink.put("s1", BLOB)
    assert caught.value.retryable
    assert len(airtable.requests) == 3


@pytest.mark.parametrize(("column", "kind"), [("result", "number"), ("created_at", "checkbox")])
async def test_a_column_that_cannot_take_the_value_is_a_clear_configuration_error(airtable, airtable_url, column,
                                                                                  kind):
    airtable.fields[column] = kind
    sink = airtable_sink(airtable, airtable_url)
    with pytest.raises(SinkError, match="422.*doctor") as caught:
        await sink.put("s1", BLOB)
    assert not caught.value.retryable
    assert len(airtable.requests) == 1 and airtable.records == {}


async def test_a_missing_column_is_a_clear_configuration_error(airtable, airtable_url):
    del airtable.fields["created_at"]
    with pytest.raises(SinkError, match="422") as caught:
        await airtable_sink(airtable, airtable_url).put("s1", BLOB)
    assert not caught.value.retryable


async def test_the_results_table_as_documented_fits_the_sink(airtable, airtable_url):
    assert await airtable_sink(airtable, airtable_url).schema_problems() == []
    assert [r.path for r in airtable.requests] == [f"/v0/meta/bases/{airtable.base_id}/tables"]


async def test_the_schema_check_names_each_missing_field_and_wrong_type(airtable, airtable_url):
    del airtable.fields["created_at"]
    airtable.fields["result"] = "singleLineText"
    problems = await airtable_sink(airtable, airtable_url).schema_problems()
    assert len(problems) == 2
    assert "'result' is singleLineText" in problems[0] and "'created_at'" in problems[1]


async def test_airtable_with_a_bad_token_is_not_retryable(airtable, airtable_url):
    sink = AirtableSink("patWRONG", airtable.base_id, airtable.table, endpoint_url=airtable_url)
    with pytest.raises(SinkError, match="401") as caught:
        await sink.get("s1")
    assert not caught.value.retryable
    assert len(airtable.requests) == 1


async def test_airtable_with_an_unknown_table_is_not_retryable(airtable, airtable_url):
    sink = AirtableSink(airtable.api_key, airtable.base_id, "nope", endpoint_url=airtable_url)
    with pytest.raises(SinkError, match="404") as caught:
        await sink.put("s1", BLOB)
    assert not caught.value.retryable


async def test_airtable_stores_text_so_a_result_must_be_utf8(airtable, airtable_url):
    sink = airtable_sink(airtable, airtable_url)
    with pytest.raises(SinkError, match="UTF-8") as caught:
        await sink.put("s1", b"\xff\xfe")
    assert not caught.value.retryable
    assert airtable.requests == []


async def test_airtable_unreachable_is_retryable():
    sink = AirtableSink("pat", "app", "results", endpoint_url="http://127.0.0.1:9", retries=0, timeout=(0.5, 0.5))
    with pytest.raises(SinkError) as caught:
        await sink.get("s1")
    assert caught.value.retryable


# Choosing the sink


def test_sqlite_is_the_default(tmp_path):
    sink = open_sink(airtable_api_key=None, airtable_base_id=None, airtable_table="results", airtable_endpoint=None,
                     sqlite_path=str(tmp_path / "r.sqlite3"))
    assert isinstance(sink, SQLiteSink) and sink.path == str(tmp_path / "r.sqlite3")


async def test_airtable_when_key_and_base_are_set(airtable, airtable_url, tmp_path):
    sink = open_sink(airtable_api_key=airtable.api_key, airtable_base_id=airtable.base_id, airtable_table=None,
                     airtable_endpoint=airtable_url, sqlite_path=str(tmp_path / "r.sqlite3"))
    assert isinstance(sink, AirtableSink)
    await sink.put("s1", BLOB)
    assert airtable.rows(session_id="s1")
    assert not (tmp_path / "r.sqlite3").exists()


@pytest.mark.parametrize(("key", "base"), [("pat", None), (None, "app")])
def test_half_an_airtable_configuration_is_an_error(key, base, tmp_path):
    with pytest.raises(ValueError, match="Airtable"):
        open_sink(airtable_api_key=key, airtable_base_id=base, airtable_table="results", airtable_endpoint=None,
                  sqlite_path=str(tmp_path / "r.sqlite3"))


async def test_workers_sharing_one_sqlite_file_all_store_their_first_result(tmp_path) -> None:
    path = tmp_path / "shared.sqlite3"
    sinks = [SQLiteSink(path) for _ in range(8)]
    await asyncio.gather(*(sink.put(f"{i:032x}", b'{"v":1}') for i, sink in enumerate(sinks)))
    assert [await sinks[0].get(f"{i:032x}") for i in range(8)] == [b'{"v":1}'] * 8


async def test_a_lock_held_by_another_process_is_waited_out(tmp_path) -> None:
    path = tmp_path / "busy.sqlite3"
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE results (session_id TEXT PRIMARY KEY, result BLOB NOT NULL, created_at TEXT NOT NULL)")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN")
    holder.execute("SELECT count(*) FROM results").fetchone()
    release = threading.Timer(0.5, holder.close)
    release.start()
    try:
        await SQLiteSink(path, timeout_s=3.0).put("a" * 32, b'{"v":1}')
    finally:
        release.join()
    assert await SQLiteSink(path).get("a" * 32) == b'{"v":1}'
