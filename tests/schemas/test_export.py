"""The exported JSON Schema files: present, current, and backward compatible with what was committed."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from schemas import analytics, events, export
from schemas.compat import compatibility_problems

ROOT = Path(export.__file__).resolve().parent.parent


def committed(name: str) -> dict[str, Any] | None:
    """The file as committed at HEAD; None when it is new (or there is no git history here)."""
    try:
        shown = subprocess.run(["git", "show", f"HEAD:schemas/json/{name}"], cwd=ROOT, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return json.loads(shown.stdout) if shown.returncode == 0 else None


def test_exported_files_are_current() -> None:
    stale = export.stale()
    assert stale == [], f"run `python -m schemas.export` and commit schemas/json/: stale {stale}"


@pytest.mark.parametrize("name", sorted(export.EXPORTS))
def test_published_versions_stay_backward_compatible(name: str) -> None:
    """A committed ``<name>.v<N>.json`` is a promise: the model exported as version N must accept what it did."""
    file = export.file_name(name, export.EXPORTS[name][1])
    before = committed(file) or json.loads((export.JSON_DIR / file).read_text())
    problems = compatibility_problems(before, export.schema_of(name))
    assert problems == [], f"{file} would break readers; bump the version instead:\n" + "\n".join(problems)


def test_no_file_claims_a_version_the_models_do_not_have() -> None:
    for path in export.JSON_DIR.glob("*.json"):
        match = re.fullmatch(r"(.+)\.v(\d+)\.json", path.name)
        assert match, f"{path.name} is not named <name>.v<version>.json"
        name, version = match[1], int(match[2])
        assert name in export.EXPORTS, f"{path.name} is exported by nothing"
        assert version <= export.EXPORTS[name][1]


def test_every_event_type_has_both_data_schemas() -> None:
    assert set(events.DATA_MODELS) == set(events.EventType) == set(analytics.DATA_MODELS)
    for kind in events.EventType:
        assert f"event-data.{kind.value}" in export.EXPORTS and f"analytics-data.{kind.value}" in export.EXPORTS


def test_versioned_documents_pin_their_version() -> None:
    for name in ("event", "result", "analytics-event"):
        assert export.schema_of(name)["properties"]["v"]["const"] == export.EXPORTS[name][1]


def test_a_breaking_model_change_is_caught_against_the_published_file(tmp_path: Path) -> None:
    class SessionCreated(BaseModel):
        session_id: str
        token: str
        chunk_size: int
        expires_at: float
        region: str

    published = json.loads((export.JSON_DIR / "api.session-created.v1.json").read_text())
    problems = compatibility_problems(published, SessionCreated.model_json_schema())
    assert "$.max_chunks: property removed" in problems and "$.region: new required property" in problems


def test_write_all_then_check(tmp_path: Path) -> None:
    assert export.main(["--check", "--dir", str(tmp_path)]) == 1
    assert export.main(["--dir", str(tmp_path)]) == 0
    assert export.main(["--check", "--dir", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(export.rendered())
    (tmp_path / "event.v1.json").write_text("{}")
    assert export.stale(tmp_path) == ["event.v1.json"]
