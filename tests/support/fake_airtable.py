"""A local Airtable Web API for tests, driven through the real ``pyairtable`` client over real HTTP.

One base, one table, records in memory. It speaks the parts of the API a result sink uses — list
with ``filterByFormula`` (``{field}='value'`` as ``pyairtable.formulas.match`` writes it), upsert
with ``performUpsert``, create, delete one or many, and the table schema of the meta API — checks
the bearer token, records every request, and answers queued faults (429, 5xx) before the real answer.

As strict as Airtable documents itself: at most 5 requests per second per base, and after a 429
the base answers 429 to everything for ``lock_s`` (30 s), each request during the lock starting
it again; it announces ``Retry-After`` only when asked to (``announce_retry_after``), since
Airtable does not promise one. Values a column cannot take (a number in a text field, an unknown
field name) are refused with 422. ``clock`` lets a test move time forward instead of waiting it.
Serve it with :class:`tests.support.fake_openai.LocalServer`.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

FORMULA = re.compile(r"^\{(?P<field>[^{}]+)\}='(?P<value>(?:[^'\\]|\\.)*)'$")
RESULTS_TABLE = {"session_id": "singleLineText", "result": "multilineText", "created_at": "dateTime"}
"""The table a result sink writes, as an operator would make it: name -> Airtable field type."""
TEXT_TYPES = frozenset({"singleLineText", "multilineText", "richText", "email", "url", "phoneNumber"})
NUMBER_TYPES = frozenset({"number", "currency", "percent", "duration", "rating"})
FIELD_OPTIONS: dict[str, dict[str, Any]] = {
    "dateTime": {"timeZone": "utc", "dateFormat": {"format": "YYYY-MM-DD", "name": "iso"},
                 "timeFormat": {"format": "HH:mm", "name": "24hour"}},
    "number": {"precision": 0},
    "checkbox": {"color": "greenBright", "icon": "check"},
}


@dataclass
class Received:
    method: str
    path: str
    query: list[tuple[str, str]]
    at: float
    json: dict[str, Any] | None = None


@dataclass
class Fault:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


class FakeAirtable:
    def __init__(
        self, *, api_key: str = "patTEST", base_id: str = "appTEST", table: str = "results",
        fields: dict[str, str] | None = None, requests_per_s: int = 5, lock_s: float = 30.0,
        announce_retry_after: bool = False, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api_key = api_key
        self.base_id = base_id
        self.table = table
        self.fields = dict(RESULTS_TABLE if fields is None else fields)
        self.requests_per_s = requests_per_s
        self.lock_s = lock_s
        self.announce_retry_after = announce_retry_after
        self.clock = clock
        self.locked_until = -math.inf
        self.rate_limited: list[Received] = []
        """Requests answered 429, injected faults included."""
        self.records: dict[str, dict[str, Any]] = {}
        self.requests: list[Received] = []
        self._served: deque[float] = deque()
        self._faults: deque[Fault] = deque()
        self._ids = (f"rec{n:014d}" for n in itertools.count(1))
        prefix = "/v0/{base}/{table}"
        self.app = Starlette(
            routes=[
                Route("/v0/meta/bases/{base}/tables", self._schema, methods=["GET"]),
                Route(prefix, self._records, methods=["GET", "POST", "PATCH", "PUT", "DELETE"]),
                Route(prefix + "/listRecords", self._list_post, methods=["POST"]),
                Route(prefix + "/{record_id}", self._record, methods=["GET", "DELETE"]),
            ]
        )

    def fail(self, status: int, *, times: int = 1, retry_after: str | None = None) -> None:
        """Answer the next requests with ``status``; a 429 locks the base like any other."""
        headers = {} if retry_after is None else {"Retry-After": retry_after}
        self._faults.extend(Fault(status, headers) for _ in range(times))

    def delay(self, seconds: float) -> None:
        """Hold the next request ``seconds`` before answering it normally (a write still in flight)."""
        self._faults.append(Fault(200, delay_s=seconds))

    def lock_for(self, seconds: float) -> None:
        """Lock the base as if another client had flooded it: 429 for ``seconds`` at least."""
        self.locked_until = self.clock() + seconds

    def add(self, fields: dict[str, Any]) -> str:
        """Put a record in the table directly, as someone editing the base by hand would."""
        record_id = next(self._ids)
        self.records[record_id] = {"id": record_id, "createdTime": _now(), "fields": dict(fields)}
        return record_id

    def rows(self, **match: Any) -> list[dict[str, Any]]:
        return [r["fields"] for r in self.records.values() if all(r["fields"].get(k) == v for k, v in match.items())]

    async def _gate(self, request: Request) -> Response | None:
        body = await request.body()
        now = self.clock()
        self.requests.append(
            Received(request.method, request.url.path, list(request.query_params.multi_items()), now,
                     orjson.loads(body) if body else None)
        )
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "AUTHENTICATION_REQUIRED", "Authentication required")
        while self._served and self._served[0] <= now - 1.0:
            self._served.popleft()
        if now < self.locked_until or len(self._served) >= self.requests_per_s:
            return self._rate_limited(now, {})
        self._served.append(now)
        if self._faults:
            fault = self._faults.popleft()
            if fault.status == 429:
                return self._rate_limited(now, fault.headers)
            if fault.status != 200:
                return _error(fault.status, "SERVER_ERROR", f"injected {fault.status}", headers=fault.headers)
            await asyncio.sleep(fault.delay_s)
        path = request.path_params
        if path["base"] != self.base_id or path.get("table", self.table) != self.table:
            return _error(404, "NOT_FOUND", "Could not find what you are looking for")
        return None

    def _rate_limited(self, now: float, headers: dict[str, str]) -> Response:
        self.locked_until = max(self.locked_until, now + self.lock_s)
        self.rate_limited.append(self.requests[-1])
        if self.announce_retry_after and "Retry-After" not in headers:
            headers = {**headers, "Retry-After": str(math.ceil(self.locked_until - now))}
        body = {"errors": [{"error": "RATE_LIMIT_REACHED",
                            "message": "Rate limit exceeded. Please try again later"}]}
        return JSONResponse(body, status_code=429, headers=headers)

    async def _schema(self, request: Request) -> Response:
        if denied := await self._gate(request):
            return denied
        fields = [{"id": f"fld{n:014d}", "name": name, "type": kind,
                   **({"options": FIELD_OPTIONS[kind]} if kind in FIELD_OPTIONS else {})}
                  for n, (name, kind) in enumerate(self.fields.items(), 1)]
        table = {"id": "tbl00000000000001", "name": self.table, "primaryFieldId": fields[0]["id"], "fields": fields,
                 "views": [{"id": "viw00000000000001", "name": "Grid view", "type": "grid"}]}
        return JSONResponse({"tables": [table]})

    def _refused(self, fields: dict[str, Any]) -> Response | None:
        """422 for a field the table does not have, or a value its column's type cannot take."""
        for name, value in fields.items():
            if name not in self.fields:
                return _error(422, "UNKNOWN_FIELD_NAME", f'Unknown field name: "{name}"')
            if not _fits(self.fields[name], value):
                return _error(422, "INVALID_VALUE_FOR_COLUMN",
                              f'Field "{name}" cannot accept the provided value')
        return None

    async def _records(self, request: Request) -> Response:
        if denied := await self._gate(request):
            return denied
        if request.method == "GET":
            return self._list(request.query_params.get("filterByFormula"), request.query_params.get("maxRecords"))
        if request.method == "DELETE":
            ids = request.query_params.getlist("records[]")
            if any(i not in self.records for i in ids):
                return _error(404, "NOT_FOUND", "Record not found")
            return JSONResponse({"records": [{"id": i, "deleted": bool(self.records.pop(i))} for i in ids]})
        body = orjson.loads(await request.body())
        for record in body.get("records") or ():
            if refused := self._refused(record.get("fields") or {}):
                return refused
        if request.method == "POST":
            return JSONResponse({"records": [self._create(r["fields"]) for r in body["records"]]})
        return self._upsert(body, replace=request.method == "PUT")

    async def _list_post(self, request: Request) -> Response:
        if denied := await self._gate(request):
            return denied
        body = orjson.loads(await request.body())
        return self._list(body.get("filterByFormula"), body.get("maxRecords"))

    async def _record(self, request: Request) -> Response:
        if denied := await self._gate(request):
            return denied
        record_id = request.path_params["record_id"]
        if record_id not in self.records:
            return _error(404, "NOT_FOUND", "Record not found")
        if request.method == "DELETE":
            del self.records[record_id]
            return JSONResponse({"id": record_id, "deleted": True})
        return JSONResponse(self.records[record_id])

    def _list(self, formula: str | None, max_records: str | None) -> Response:
        records = list(self.records.values())
        if formula:
            found = FORMULA.match(formula)
            if found is None:
                return _error(422, "INVALID_FILTER_BY_FORMULA", f"this fake does not understand {formula!r}")
            value = re.sub(r"\\(.)", r"\1", found["value"])
            records = [r for r in records if str(r["fields"].get(found["field"], "")) == value]
        if max_records:
            records = records[: int(max_records)]
        return JSONResponse({"records": records})

    def _create(self, fields: dict[str, Any]) -> dict[str, Any]:
        record_id = self.add(fields)
        return self.records[record_id]

    def _upsert(self, body: dict[str, Any], *, replace: bool) -> Response:
        keys = (body.get("performUpsert") or {}).get("fieldsToMergeOn")
        if not keys:
            return _error(422, "INVALID_REQUEST_UNKNOWN", "this fake only updates through performUpsert")
        created, updated, out = [], [], []
        for record in body["records"]:
            fields = record["fields"]
            matches = [r for r in self.records.values() if all(r["fields"].get(k) == fields.get(k) for k in keys)]
            if len(matches) > 1:
                return _error(422, "INVALID_VALUE_FOR_COLUMN", "fieldsToMergeOn matches more than one record")
            if matches:
                target = matches[0]
                target["fields"] = dict(fields) if replace else {**target["fields"], **fields}
                updated.append(target["id"])
            else:
                target = self._create(fields)
                created.append(target["id"])
            out.append(target)
        return JSONResponse({"records": out, "createdRecords": created, "updatedRecords": updated})


def _fits(kind: str, value: Any) -> bool:
    """Whether a column of Airtable type ``kind`` takes ``value`` as the Web API receives it."""
    if value is None:
        return True
    if kind in TEXT_TYPES:
        return isinstance(value, str) and (kind != "singleLineText" or "\n" not in value)
    if kind in NUMBER_TYPES:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "checkbox":
        return isinstance(value, bool)
    if kind in ("dateTime", "date"):
        try:
            datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return False
        return isinstance(value, str)
    return True


def _error(status: int, kind: str, message: str, *, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status, headers=headers)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
