"""The AsyncAPI document: it parses, every reference resolves, it covers every event, and its payloads validate."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource

from schemas import export
from schemas.events import Event, EventType

DOC_PATH = Path(export.__file__).parent / "asyncapi.yaml"
DOC: dict[str, Any] = yaml.safe_load(DOC_PATH.read_text())
BASE = DOC_PATH.resolve().as_uri()


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def pointer(ref: str) -> Any:
    target: Any = DOC
    for part in ref[2:].split("/"):
        target = target[part]
    return target


def retrieve(uri: str) -> Resource:
    """External references are files beside the document (schemas/json/...)."""
    path = Path(uri.removeprefix("file://"))
    return Resource.from_contents(json.loads(path.read_text()))


def validator(payload: dict[str, Any]) -> jsonschema.Validator:
    registry: Registry = Registry(retrieve=retrieve)
    return jsonschema.Draft202012Validator({"$id": BASE, **payload}, registry=registry)


def test_it_is_an_asyncapi_3_document() -> None:
    assert DOC["asyncapi"].startswith("3.")
    assert DOC["info"]["title"] and DOC["info"]["version"]
    assert {"sessionEvents", "liveEvents", "analytics", "jobs", "analyze"} <= set(DOC["channels"])
    assert DOC["channels"]["sessionEvents"]["address"] == "/sessions/{sid}/events"
    assert DOC["channels"]["liveEvents"]["address"] == "dodo:events"
    assert DOC["channels"]["analytics"]["address"] == "dodo:analytics"


def test_every_reference_resolves() -> None:
    for ref in set(refs(DOC)):
        if ref.startswith("#/"):
            pointer(ref)
        else:
            assert ref.startswith("./json/"), ref
            assert (DOC_PATH.parent / ref).is_file(), f"{ref} is not an exported schema"


def test_every_event_type_and_the_analytics_schemas_are_described() -> None:
    external = {ref for ref in refs(DOC) if not ref.startswith("#")}
    for kind in EventType:
        assert f"./json/event-data.{kind.value}.v1.json" in external
        assert f"./json/analytics-data.{kind.value}.v1.json" in external
        assert any(m.get("name") == kind.value for m in DOC["components"]["messages"].values())
    assert "./json/event.v1.json" in external and "./json/analytics-event.v1.json" in external
    for channel in ("sessionEvents", "liveEvents"):
        assert len(DOC["channels"][channel]["messages"]) == len(EventType)
    for operation in DOC["operations"].values():
        pointer(operation["channel"]["$ref"])


def message_for(kind: EventType) -> dict[str, Any]:
    return next(m for m in DOC["components"]["messages"].values() if m.get("name") == kind.value)


def event(kind: EventType, data: dict[str, Any]) -> dict[str, Any]:
    return Event(id="1-0", type=kind, session_id="a" * 32, timestamp=datetime.now(timezone.utc),
                 data=data).model_dump(mode="json")


RESULT = {"v": 1, "session_id": "a" * 32, "created_at": "2025-01-31T08:00:00Z",
          "video": {"duration_s": 1.0, "size_bytes": 10, "width": 2, "height": 2, "codec": "h264", "container": "mp4"},
          "frames": [0.5], "analysis": {"status": "skipped", "reason": "no model"}, "timings": {}}


SAMPLES = {
    EventType.SESSION_CREATED: {"size": 10, "chunks": 1},
    EventType.CHUNK_RECEIVED: {"index": 0, "received": 1, "chunks": 1},
    EventType.UPLOAD_COMPLETE: {"size": 10, "chunks": 1},
    EventType.PROCESSING_STARTED: {"stage": "decode"},
    EventType.FRAMES_EXTRACTED: {"frames": 1, "timestamps": [0.5], "duration": 1.0, "audio": False},
    EventType.AI_ANALYSIS_PROGRESS: {"stage": "vision", "progress": 0.5},
    EventType.ERROR: {"code": "missing_chunks", "message": "send them", "retryable": True, "missing": [1]},
    EventType.SESSION_ERASED: {"keys_deleted": 3},
}


@pytest.mark.parametrize("kind", list(EventType))
def test_message_payloads_accept_real_events_and_reject_wrong_data(kind: EventType) -> None:
    check = validator(message_for(kind)["payload"])
    data = {"result": RESULT} if kind == EventType.ANALYSIS_COMPLETE else SAMPLES[kind]
    check.validate(event(kind, data))
    assert not check.is_valid(event(kind, {"unexpected": True}))
    other = EventType.SESSION_ERASED if kind != EventType.SESSION_ERASED else EventType.SESSION_CREATED
    assert not check.is_valid({**event(kind, data), "type": other.value})


def test_the_analytics_example_is_valid() -> None:
    message = DOC["components"]["messages"]["analyticsEvent"]
    check = validator(message["payload"])
    for example in message["examples"]:
        check.validate(example["payload"])
        kind = example["payload"]["type"]
        validator({"$ref": f"./json/analytics-data.{kind}.v1.json"}).validate(example["payload"]["data"])
    assert not check.is_valid({**message["examples"][0]["payload"], "session_id": "a" * 32})
