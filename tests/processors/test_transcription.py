"""The soundtrack to text, through the real openai client against a fake as strict as the API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import openai
import pytest

from processors.speech import clock_time
from processors.transcription import transcribe
from tests.support.fake_openai import TRANSCRIPTION, FakeOpenAI, Fault, LocalServer
from tests.support.fake_speech import tone_words
from tests.support.videos import make_sine_wav, make_tones_wav


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


async def test_fifteen_minutes_are_transcribed_whole_in_one_request_when_pieces_may_be_that_long(fake, client):
    heard = await transcribe(client, make_sine_wav(duration=900), model="gpt-transcribe", piece_seconds=1380)
    assert heard.text == "on emporte le canapé" and heard.warnings == []
    assert fake.heard == [pytest.approx(900, abs=0.1)]


async def test_the_fake_refuses_what_the_api_refuses_fifteen_minutes_of_wav(fake, client):
    with pytest.raises(openai.APIStatusError) as caught:
        await client.audio.transcriptions.create(model="gpt-transcribe",
                                                 file=("audio.wav", make_sine_wav(duration=900), "audio/wav"))
    assert caught.value.status_code == 413


async def test_long_audio_is_transcribed_piece_by_piece_in_order_each_with_its_time_span(fake, client):
    heard = await transcribe(client, make_sine_wav(duration=61), model="gpt-transcribe", piece_seconds=25)
    assert [piece.text for piece in heard.timed] == ["on emporte le canapé"] * 3
    assert heard.timed[0].start_s == 0 and heard.timed[-1].end_s == pytest.approx(61)
    assert all(p.end_s == later.start_s and p.end_s - p.start_s <= 25 for p, later in zip(heard.timed, heard.timed[1:]))
    marks = [clock_time(piece.start_s) for piece in heard.timed]
    assert heard.text == " ".join(f"[{mark}] on emporte le canapé" for mark in marks)
    assert heard.warnings == []
    assert sum(fake.heard) == pytest.approx(61, abs=0.1)


async def test_each_piece_is_heard_as_it_was_said(fake, client):
    fake.hears = tone_words({440: "cuisine", 660: "salon", 880: "chambre"})
    said = [(1, 17, 440), (21, 37, 660), (41, 57, 880)]
    heard = await transcribe(client, make_tones_wav(said, duration=60), model="gpt-transcribe", piece_seconds=25)
    assert [(round(p.start_s), round(p.end_s), p.text) for p in heard.timed] == [
        (0, 21, "cuisine"), (21, 41, "salon"), (41, 60, "chambre")]
    assert heard.text == "[00:00] cuisine [00:20] salon [00:40] chambre"


async def test_the_language_hint_is_sent_when_set(fake, client):
    await transcribe(client, make_sine_wav(duration=1), model="gpt-transcribe", language="fr")
    await transcribe(client, make_sine_wav(duration=1), model="gpt-transcribe")
    hinted, unhinted = fake.received(TRANSCRIPTION)
    assert hinted.form["language"] == "fr" and "language" not in unhinted.form


async def test_a_transcription_model_the_api_does_not_have_costs_the_transcript_with_a_clear_warning(fake, client):
    fake.fail(404, code="model_not_found", endpoint=TRANSCRIPTION)
    heard = await transcribe(client, make_sine_wav(duration=61), model="gpt-gone", piece_seconds=25, concurrency=1)
    assert heard.text is None
    [skipped] = heard.warnings
    assert "'gpt-gone'" in skipped and "DODOLENS_TRANSCRIPTION_MODEL" in skipped and "404" in skipped
    assert len(fake.received(TRANSCRIPTION)) == 1, "no piece is sent after the model is known missing"


async def test_a_piece_refused_after_others_cuts_the_transcript_there_and_says_so(fake, client):
    fake.inject(Fault(), endpoint=TRANSCRIPTION)
    fake.fail(400, endpoint=TRANSCRIPTION)
    heard = await transcribe(client, make_sine_wav(duration=61), model="gpt-transcribe", piece_seconds=25,
                             concurrency=1)
    assert heard.text == "on emporte le canapé" and len(heard.timed) == 1
    assert heard.warnings == [f"transcript cut at {clock_time(heard.timed[0].end_s)}: Error code: 400 - injected 400"]
    assert len(fake.received(TRANSCRIPTION)) == 2


async def test_audio_refused_from_the_first_piece_is_a_skipped_transcript(fake, client):
    fake.fail(400, endpoint=TRANSCRIPTION)
    heard = await transcribe(client, make_sine_wav(duration=1), model="gpt-transcribe")
    assert heard.text is None and heard.warnings == ["transcription skipped: Error code: 400 - injected 400"]


async def test_audio_the_decoder_did_not_make_is_skipped_with_a_warning(fake, client):
    heard = await transcribe(client, b"RIFF not a wav", model="gpt-transcribe")
    assert heard.text is None and "could not be encoded" in heard.warnings[0]
    assert fake.received(TRANSCRIPTION) == []
