"""JSON Schema files of every published model, one file per name and version, under ``schemas/json/``.

Run ``python -m schemas.export`` after changing a model; ``--check`` only reports stale files.
A file is named ``<name>.v<version>.json`` and, once committed, is a promise: later exports of the
same version must stay backward compatible with it (see :mod:`schemas.compat`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from schemas import analytics, api, events, result

JSON_DIR = Path(__file__).parent / "json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
API_VERSION = 1
"""Version of the HTTP bodies: they carry no ``v`` field, the version lives in the file name."""

EXPORTS: dict[str, tuple[type[BaseModel], int]] = {
    "event": (events.Event, events.EVENT_VERSION),
    **{f"event-data.{t.value}": (m, events.EVENT_VERSION) for t, m in events.DATA_MODELS.items()},
    "result": (result.Result, result.RESULT_VERSION),
    "analytics-event": (analytics.AnalyticsEvent, analytics.ANALYTICS_VERSION),
    **{f"analytics-data.{t.value}": (m, analytics.ANALYTICS_VERSION) for t, m in analytics.DATA_MODELS.items()},
    "api.create-session": (api.CreateSession, API_VERSION),
    "api.session-created": (api.SessionCreated, API_VERSION),
    "api.complete": (api.Complete, API_VERSION),
    "api.accepted": (api.Accepted, API_VERSION),
    "api.session-status": (api.SessionStatus, API_VERSION),
    "api.erasure-receipt": (api.ErasureReceipt, API_VERSION),
    "api.error": (api.ErrorResponse, API_VERSION),
}
"""Exported name -> (model, current version)."""


def file_name(name: str, version: int) -> str:
    return f"{name}.v{version}.json"


def schema_of(name: str) -> dict[str, Any]:
    """The JSON Schema of one export; a ``v`` property is pinned to the version it describes."""
    model, version = EXPORTS[name]
    schema = model.model_json_schema()
    if "v" in schema.get("properties", {}):
        schema["properties"]["v"]["const"] = version
    return {"$schema": DIALECT, "$id": file_name(name, version), **schema}


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def rendered() -> dict[str, str]:
    """File name -> content, for every current export."""
    return {file_name(name, version): render(schema_of(name)) for name, (_model, version) in EXPORTS.items()}


def stale(directory: Path = JSON_DIR) -> list[str]:
    """Current exports whose file is missing or differs from what the models say now."""
    out = []
    for name, text in rendered().items():
        path = directory / name
        if not path.exists() or path.read_text() != text:
            out.append(name)
    return out


def write_all(directory: Path = JSON_DIR) -> list[Path]:
    """Write every current export; files of older versions are left alone (they stay published)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in rendered().items():
        path = directory / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m schemas.export", description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 when a file is stale, write nothing")
    p.add_argument("--dir", type=Path, default=JSON_DIR)
    args = p.parse_args(argv)
    if args.check:
        names = stale(args.dir)
        for name in names:
            print(f"stale: {name}", file=sys.stderr)
        return 1 if names else 0
    for path in write_all(args.dir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
