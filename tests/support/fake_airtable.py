"""A local Airtable Web API for tests, driven through the real ``pyairtable`` client over real HTTP.

One base, one table, records in memory. It speaks the parts of the API a result sink uses — list
with ``filterByFormula`` (``{field}='value'`` as ``pyairtable.formulas.match`` writes it), upsert
with ``performUpsert``, create, delete one or many — checks the bearer token, records every
request, and answers queued faults (429 with ``Retry-After``, 5xx) before the real answer.
Serve it with :class:`tests.support.fake_openai.LocalServer`.
"""

from __future__ import annotations

import itertools
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

FORMULA = re.compile(r"^\{(?P<field>[^{}]+)\}='(?P<value>(?:[^'\\]|\\.)*)'$")


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


class FakeAirtable:
    def __init__(self, *, api_key: str = "patTEST", base_id: str = "appTEST", table: str = "results") -> None:
        self.api_key = api_key
        self.base_id = base_id
        self.table = table
        self.records: dict[str, dict[str, Any]] = {}
        self.requests: list[Received] = []
        self._faults: deque[Fault] = deque()
        self._ids = (f"rec{n:014d}" for n in itertools.count(1))
        prefix = "/v0/{base}/{table}"
        self.app = Starlette(
            routes=[
                Route(prefix, self._records, methods=["GET", "POST", "PATCH", "PUT", "DELETE"]),
                Route(prefix + "/listRecords", self._list_post, methods=["POST"]),
                Route(prefix + "/{record_id}", self._record, methods=["GET", "DELETE"]),
            ]
        )

    def fail(self, status: int, *, times: int = 1, retry_after: str | None = None) -> None:
        headers = {} if retry_after is None else {"Retry-After": retry_after}
        self._faults.extend(Fault(status, headers) for _ in range(times))

    def add(self, fields: dict[str, Any]) -> str:
        """Put a record in the table directly, as someone editing the base by hand would."""
        record_id = next(self._ids)
        self.records[record_id] = {"id": record_id, "createdTime": _now(), "fields": dict(fields)}
        return record_id

    def rows(self, **match: Any) -> list[dict[str, Any]]:
        return [r["fields"] for r in self.records.values() if all(r["fields"].get(k) == v for k, v in match.items())]

    async def _gate(self, request: Request) -> Response | None:
        body = await request.body()
        self.requests.append(
            Received(request.method, request.url.path, list(request.query_params.multi_items()), time.monotonic(),
                     orjson.loads(body) if body else None)
        )
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "AUTHENTICATION_REQUIRED", "Authentication required")
        if self._faults:
            fault = self._faults.popleft()
            if fault.status == 429:
                body = {"errors": [{"error": "RATE_LIMIT_REACHED", "message": "Rate limit exceeded."}]}
                return JSONResponse(body, status_code=429, headers=fault.headers)
            return _error(fault.status, "SERVER_ERROR", f"injected {fault.status}", headers=fault.headers)
        path = request.path_params
        if (path["base"], path["table"]) != (self.base_id, self.table):
            return _error(404, "NOT_FOUND", "Could not find what you are looking for")
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


def _error(status: int, kind: str, message: str, *, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status, headers=headers)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
