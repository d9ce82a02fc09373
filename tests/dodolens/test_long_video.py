"""A long video keeps its whole transcript, and whatever the analysis had to do without is said."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from dodolens.client import analyze_bytes
from dodolens.runner import Runtime
from dodolens.settings import Settings
from tests.support.fake_openai import TRANSCRIPTION, FakeOpenAI, LocalServer
from tests.support.videos import make_video

SAID = "Le piano reste ici, on emporte le canapé."


@pytest.fixture
async def model() -> AsyncIterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI(transcript=SAID)
    async with LocalServer(fake.app) as server:
        yield fake, server.url + "/v1"


@pytest.fixture
async def analyzing(settings: Settings, model: tuple[FakeOpenAI, str]) -> AsyncIterator[Runtime]:
    fake, url = model
    changed = settings.with_overrides(base_url=url, api_key=fake.api_key, max_retries=0,
                      chunk_size=1024 * 1024, transcription_language="fr")
    async with Runtime(changed) as rt:
        yield rt


@pytest.mark.slow
async def test_a_fifteen_minute_video_is_analysed_with_its_whole_transcript(analyzing, model):
    fake, _ = model
    video = make_video(duration=900.0, width=96, height=64, fps=2)
    outcome = await analyze_bytes(analyzing.url, video)
    assert outcome.error is None, outcome.events[-1]
    assert outcome.result is not None
    assert outcome.result["analysis"]["warnings"] == []
    assert sum(fake.heard) == pytest.approx(900, abs=1), "the model heard the whole soundtrack"
    uploads = fake.received(TRANSCRIPTION)
    assert len(uploads) >= 900 / 90, "in pieces of at most DODOLENS_TRANSCRIPT_PIECE"
    assert all(u.form["language"] == "fr" and len(u.form["file"].data) < 25 * 1024 * 1024 for u in uploads)
    assert outcome.result["analysis"]["transcript_chars"] > len(uploads) * len(SAID), "every piece's text is kept"
    rooms = outcome.result["inventory"]["rooms"]
    piano = [i for r in rooms for i in r["items"] if i["catalogue_id"] == "piano_upright"]
    assert any(i["excluded"] for i in piano), "what was said in the transcript reached the vision model"


async def test_a_skipped_transcript_is_a_warning_in_the_result_and_the_events(analyzing, model):
    fake, _ = model
    fake.fail(400, endpoint=TRANSCRIPTION)
    outcome = await analyze_bytes(analyzing.url, make_video(duration=3.0, width=96, height=64))
    assert outcome.result is not None and outcome.result["analysis"]["status"] == "complete"
    [warning] = outcome.result["analysis"]["warnings"]
    assert warning.startswith("transcription skipped") and "400" in warning
    said = [e["data"]["warnings"] for e in outcome.events if "warnings" in e.get("data", {})]
    assert said == [[warning]]
