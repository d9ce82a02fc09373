"""The soundtrack to text, through the real openai client against a fake as strict as the API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import openai
import pytest

from processors.transcription import transcribe
from tests.support.fake_openai import TRANSCRIPTION, FakeOpenAI, Fault, LocalServer
from tests.support.videos import make_sine_wav


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer(FakeOpenAI().app) as running:
        yield running


@pytest.fixture
def fake(server: LocalServer) -> FakeOpenAI:
    server.app = (fresh := FakeOpenAI(transcript="on emporte le canapé")).app
    return fresh


@pytest.fixture
async def client(server: LocalServer, fake: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=fake.api_key, max_retries=0) as made:
        yield made


async def test_fifteen_minutes_are_transcribed_whole_in_one_request(fake, client):
    heard = await transcribe(client, make_sine_wav(duration=900), model="gpt-transcribe")
    assert heard.text == "on emporte le canapé" and heard.warnings == []
    assert fake.heard == [pytest.approx(900, abs=0.1)]


async def test_the_fake_refuses_what_the_api_refuses_fifteen_minutes_of_wav(fake, client):
    with pytest.raises(openai.APIStatusError) as caught:
        await client.audio.transcriptions.create(model="gpt-transcribe",
                                                 file=("audio.wav", make_sine_wav(duration=900), "audio/wav"))
    assert caught.value.status_code == 413


async def test_long_audio_is_transcribed_piece_by_piece_in_order_with_each_start_time(fake, client):
    heard = await transcribe(client, make_sine_wav(duration=61), model="gpt-transcribe", max_seconds=25)
    assert heard.text == ("[00:00] on emporte le canapé [00:20] on emporte le canapé "
                          "[00:40] on emporte le canapé")
    assert heard.warnings == ["transcription: the 01:01 soundtrack was sent in 3 pieces"]
    assert sum(fake.heard) == pytest.approx(61, abs=0.1)


async def test_the_language_hint_is_sent_when_set(fake, client):
    await transcribe(client, make_sine_wav(duration=1), model="gpt-transcribe", language="fr")
    await transcribe(client, make_sine_wav(duration=1), model="gpt-transcribe")
    hinted, unhinted = fake.received(TRANSCRIPTION)
    assert hinted.form["language"] == "fr" and "language" not in unhinted.form


async def test_a_transcription_model_the_api_does_not_have_costs_the_transcript_with_a_clear_warning(fake, client):
    fake.fail(404, code="model_not_found", endpoint=TRANSCRIPTION)
    heard = await transcribe(client, make_sine_wav(duration=61), model="gpt-gone", max_seconds=25)
    assert heard.text is None
    [split, skipped] = heard.warnings
    assert "'gpt-gone'" in skipped and "DODOLENS_TRANSCRIPTION_MODEL" in skipped and "404" in skipped
    assert len(fake.received(TRANSCRIPTION)) == 1, "no piece is sent after the model is known missing"


async def test_a_piece_refused_after_others_cuts_the_transcript_there_and_says_so(fake, client):
    fake.inject(Fault(), endpoint=TRANSCRIPTION)
    fake.fail(400, endpoint=TRANSCRIPTION)
    heard = await transcribe(client, make_sine_wav(duration=61), model="gpt-transcribe", max_seconds=25)
    assert heard.text == "[00:00] on emporte le canapé"
    assert heard.warnings[1] == "transcript cut at 00:20: Error code: 400 - injected 400"
    assert len(fake.received(TRANSCRIPTION)) == 2


async def test_audio_refused_from_the_first_piece_is_a_skipped_transcript(fake, client):
    fake.fail(400, endpoint=TRANSCRIPTION)
    heard = await transcribe(client, make_sine_wav(duration=1), model="gpt-transcribe")
    assert heard.text is None and heard.warnings == ["transcription skipped: Error code: 400 - injected 400"]


async def test_audio_the_decoder_did_not_make_is_skipped_with_a_warning(fake, client):
    heard = await transcribe(client, b"RIFF not a wav", model="gpt-transcribe")
    assert heard.text is None and "could not be encoded" in heard.warnings[0]
    assert fake.received(TRANSCRIPTION) == []
