"""Start-up checks: a model that is gone or a result table that cannot take a result stops
DodoLens with one clear line, before any upload fails for it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from dodolens.doctor import check
from dodolens.settings import Settings
from tests.support.fake_airtable import FakeAirtable
from tests.support.fake_openai import FakeOpenAI, LocalServer

ROOT = Path(__file__).resolve().parents[2]
SECRET = "cd" * 32


@pytest.fixture(scope="module")
def openai_server() -> Iterator[LocalServer]:
    with LocalServer(FakeOpenAI().app) as running:
        yield running


@pytest.fixture(scope="module")
def airtable_server() -> Iterator[LocalServer]:
    with LocalServer(FakeAirtable().app) as running:
        yield running


@pytest.fixture
def airtable(airtable_server: LocalServer) -> FakeAirtable:
    airtable_server.app = (fresh := FakeAirtable()).app
    return fresh


@pytest.fixture
def configured(settings: Settings, openai_server: LocalServer, airtable_server: LocalServer,
               airtable: FakeAirtable) -> Settings:
    openai_server.app = FakeOpenAI().app
    return replace(settings, openai_base_url=openai_server.url + "/v1", openai_api_key="sk-test",
                   airtable_api_key=airtable.api_key, airtable_base_id=airtable.base_id,
                   airtable_endpoint=airtable_server.url)


def dodolens(command: str, settings: Settings, **env: str) -> subprocess.CompletedProcess[str]:
    variables = {**os.environ, "REDIS_URL": settings.redis_url or "", "DODOLENS_MASTER_SECRET": SECRET,
                 "OPENAI_BASE_URL": settings.openai_base_url or "", "OPENAI_API_KEY": settings.openai_api_key or "",
                 "AIRTABLE_API_KEY": settings.airtable_api_key or "",
                 "DODOLENS_AIRTABLE_BASE_ID": settings.airtable_base_id or "",
                 "DODOLENS_AIRTABLE_ENDPOINT": settings.airtable_endpoint or "", "COLUMNS": "300", **env}
    return subprocess.run([sys.executable, "-m", "dodolens.cli", command], env=variables, cwd=ROOT, text=True,
                          capture_output=True, timeout=60)


async def test_current_models_and_the_documented_table_pass(configured):
    checkup = await check(configured)
    assert checkup.problems == [] and len(checkup.passed) == 3


async def test_a_vision_model_that_is_gone_is_one_clear_start_up_error(configured):
    worker = dodolens("worker", configured, DODOLENS_VISION_MODEL="gpt-4o-mini-2024-07-18-gone")
    assert worker.returncode != 0
    [line] = worker.stderr.strip().splitlines()
    assert "DODOLENS_VISION_MODEL=gpt-4o-mini-2024-07-18-gone" in line and "404" in line
    assert "Traceback" not in worker.stderr and "running" not in worker.stderr


async def test_dodolens_up_checks_too(configured):
    up = dodolens("up", configured, DODOLENS_TRANSCRIPTION_MODEL="whisper-0")
    assert up.returncode != 0 and "DODOLENS_TRANSCRIPTION_MODEL=whisper-0" in up.stderr


async def test_a_result_table_missing_a_column_is_one_line_per_problem(configured, airtable):
    del airtable.fields["result"]
    airtable.fields["created_at"] = "checkbox"
    worker = dodolens("worker", configured)
    assert worker.returncode != 0
    lines = worker.stderr.strip().splitlines()
    assert len(lines) == 2 and all("Airtable table 'results'" in line for line in lines)
    assert "'result'" in lines[0] and "'created_at' is checkbox" in lines[1]


async def test_doctor_lists_every_check_and_fails_on_a_problem(configured, airtable):
    healthy = dodolens("doctor", configured)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert healthy.stdout.count("ok ") == 3
    airtable.fields.pop("session_id")
    broken = dodolens("doctor", configured, DODOLENS_AIRTABLE_TABLE="results")
    assert broken.returncode == 1 and "problem Airtable table 'results'" in broken.stdout


async def test_a_wrong_key_is_a_problem_an_unreachable_service_only_a_note(configured):
    refused = await check(replace(configured, openai_api_key="sk-wrong"))
    assert [p for p in refused.problems if "OPENAI_API_KEY" in p]
    unreachable = await check(replace(configured, openai_base_url="http://127.0.0.1:9/v1",
                                      airtable_endpoint="http://127.0.0.1:9"))
    assert unreachable.problems == [] and len(unreachable.notes) == 2
