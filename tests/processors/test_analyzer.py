"""The analyzer, through the real ``openai`` client against a local fake of the API.

What is specified: what the request carries (frames, detail, strict schema, token budget, the
transcript), how the answer becomes an inventory (catalogue volumes, exclusions), how the
client's retries behave (Retry-After, backoff, timeouts) and which failures may be retried.
"""

from __future__ import annotations

import base64
import io
import re
import socket
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import date

import av
import openai
import pytest
from PIL import Image

from processors.analyzer import (SKIPPED_REASON, AnalysisError, AnalyzerConfig, analyze, describe, model_client,
                                time_needed)
from processors.batches import plan
from processors.prompt import (
    MAX_TRANSCRIPT_CHARS,
    build_messages,
    instructions,
    parse_inventory,
    response_format,
)
from processors.usage import Price
from schemas import catalogue
from tests.support.fake_openai import (
    CHAT,
    MODELS,
    TRANSCRIPTION,
    FakeOpenAI,
    Fault,
    LocalServer,
    item_for,
    object_item,
    sent_jpegs,
    tour_sight,
)
from tests.support.tour import Tour, make_tour, read_codes
from tests.support.fake_speech import tone_words
from tests.support.videos import make_sine_wav, make_tones_wav

WAV = make_sine_wav(duration=1.0)


def jpeg(seed: int, size: tuple[int, int] = (16, 12)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (seed * 53 % 256, seed * 97 % 256, 120)).save(buffer, "JPEG")
    return buffer.getvalue()


def frames(count: int) -> list[tuple[float, bytes]]:
    return [(index * 2.5, jpeg(index)) for index in range(count)]


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer(FakeOpenAI().app) as running:
        yield running


TODAY = date(2026, 12, 1)
"""The fake's calendar, so that tests of models with a shutdown date do not expire with it."""


@pytest.fixture
def fake(server: LocalServer) -> FakeOpenAI:
    """A fresh fake API for each test, behind the module's server."""
    server.app = (fresh := FakeOpenAI(transcript="", today=TODAY)).app
    return fresh


@pytest.fixture
def config(server: LocalServer, fake: FakeOpenAI) -> AnalyzerConfig:
    """No batch retries: each test counts the client's own retries; the batch tests turn them on."""
    return AnalyzerConfig(base_url=server.url + "/v1", api_key=fake.api_key, timeout_s=5.0, max_retries=2,
                          batch_retries=0)


def chat_body(fake: FakeOpenAI, index: int = -1) -> dict:
    return fake.received(CHAT)[index].json


def user_texts(body: dict) -> list[str]:
    return [part["text"] for m in body["messages"] if m["role"] == "user" for part in m["content"]
            if part["type"] == "text"]


def images(body: dict) -> list[dict]:
    return [part["image_url"] for m in body["messages"] if m["role"] == "user" for part in m["content"]
            if part["type"] == "image_url"]


async def failure(frames_, audio, cfg) -> AnalysisError:
    with pytest.raises(AnalysisError) as caught:
        await analyze(frames_, audio, cfg)
    return caught.value


# What the request carries


async def test_every_frame_is_sent_as_a_jpeg_data_url_at_the_configured_detail(fake, config):
    sent = frames(3)
    await analyze(sent, None, config)
    parts = images(chat_body(fake))
    assert [p["detail"] for p in parts] == ["low"] * 3
    assert [base64.b64decode(p["url"].removeprefix("data:image/jpeg;base64,")) for p in parts] == [j for _, j in sent]
    assert "Frame 2 at 5.0 s" in user_texts(chat_body(fake))


async def test_high_detail_is_passed_through(fake, config):
    await analyze(frames(2), None, replace(config, image_detail="high"))
    assert [p["detail"] for p in images(chat_body(fake))] == ["high", "high"]


async def test_the_model_token_budget_and_strict_schema_are_sent(fake, config):
    await analyze(frames(1), None, replace(config, vision_model="gpt-4.1-mini", max_output_tokens=1234))
    body = chat_body(fake)
    assert body["model"] == "gpt-4.1-mini"
    assert body["max_completion_tokens"] == 1234
    assert body["response_format"] == response_format()
    assert body["response_format"]["json_schema"]["strict"] is True
    assert body["messages"][0] == {"role": "system", "content": instructions()}


async def test_the_client_authenticates_with_the_configured_key(fake, config):
    await analyze(frames(1), None, config)
    assert fake.received(CHAT)[0].headers["authorization"] == f"Bearer {fake.api_key}"


# The answer becomes the inventory


async def test_the_inventory_is_what_the_model_saw_with_catalogue_volumes(fake, config):
    sent = frames(4)
    analysis = await analyze(sent, None, config)
    ids = list(catalogue.ids())
    expected = [item_for(j, ids) for _, j in sent]
    [room] = analysis.inventory.rooms
    assert [i.catalogue_id for i in room.items] == expected
    assert [i.frames for i in room.items] == [[0], [1], [2], [3]]
    assert [i.volume_m3 for i in room.items] == [catalogue.lookup(i).volume_m3 for i in expected]
    litres = sum((1 + n % 2) * round(catalogue.lookup(cid).volume_m3 * 1000) for n, cid in enumerate(expected))
    assert analysis.inventory.total_volume_m3 == litres / 1000
    assert analysis.inventory.catalogue_version == catalogue.version()
    assert analysis.model == "gpt-5.4-mini-2026-03-17"
    assert analysis.skipped_reason is None


async def test_tokens_are_the_sum_of_transcription_and_vision_usage(fake, config):
    fake.transcript = "Voilà le salon."
    analysis = await analyze(frames(2), WAV, replace(config, transcription_model="gpt-4o-mini-transcribe"))
    transcription, chat = fake.answers
    assert transcription["usage"]["type"] == "tokens"
    assert analysis.tokens == transcription["usage"]["total_tokens"] + chat["usage"]["total_tokens"]
    assert analysis.tokens > chat["usage"]["total_tokens"]


async def test_progress_is_reported_stage_by_stage_up_to_done(fake, config):
    seen: list[tuple[str, float]] = []

    async def progress(stage: str, fraction: float) -> None:
        seen.append((stage, fraction))

    await analyze(frames(1), WAV, config, progress)
    assert [stage for stage, _ in seen] == ["transcription", "transcription", "vision", "vision", "inventory"]
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


# The transcript


async def test_the_audio_is_uploaded_as_ogg_opus_for_transcription(fake, config):
    fake.transcript = "  Bon, ici c'est la cuisine.  "
    analysis = await analyze(frames(1), WAV, config)
    [upload] = fake.received(TRANSCRIPTION)
    assert upload.form["model"] == "gpt-transcribe"
    assert (upload.form["file"].filename, upload.form["file"].content_type) == ("audio.ogg", "audio/ogg")
    assert upload.form["file"].data.startswith(b"OggS") and len(upload.form["file"].data) < len(WAV) / 5
    assert analysis.transcript == "Bon, ici c'est la cuisine."
    assert "<transcript>\nBon, ici c'est la cuisine.\n</transcript>" in "\n".join(user_texts(chat_body(fake)))


@pytest.mark.parametrize("said", ["Le piano reste ici, on le vend.", "The piano stays with the house."])
async def test_an_item_the_customer_keeps_is_excluded_from_the_volume(fake, config, said):
    fake.transcript = said
    analysis = await analyze(frames(2), WAV, config)
    piano = next(i for r in analysis.inventory.rooms for i in r.items if i.catalogue_id == "piano_upright")
    assert piano.excluded and piano.frames == []
    assert analysis.inventory.excluded_volume_m3 == catalogue.lookup("piano_upright").volume_m3
    kept = sum(i.total_m3 for r in analysis.inventory.rooms for i in r.items if not i.excluded)
    assert analysis.inventory.total_volume_m3 == pytest.approx(kept)


async def test_an_item_the_customer_adds_is_moved(fake, config):
    fake.transcript = "Et le piano vient aussi."
    analysis = await analyze(frames(1), WAV, config)
    piano = next(i for r in analysis.inventory.rooms for i in r.items if i.catalogue_id == "piano_upright")
    assert not piano.excluded
    assert analysis.inventory.excluded_volume_m3 == 0


async def test_an_object_outside_the_catalogue_is_sized_from_its_dimensions(fake, config):
    fake.transcript = "La borne d'arcade part avec nous."
    analysis = await analyze(frames(1), WAV, config)
    [arcade] = [i for r in analysis.inventory.rooms for i in r.items if i.out_of_catalogue]
    assert arcade.label == "Borne d'arcade" and arcade.fragile
    assert arcade.volume_m3 == round(0.8 * 0.7 * 1.8, 3)


async def test_without_audio_nothing_is_transcribed_and_the_model_is_told(fake, config):
    analysis = await analyze(frames(1), None, config)
    assert fake.received(TRANSCRIPTION) == []
    assert analysis.transcript is None
    assert "The video has no audio: there is no transcript." in user_texts(chat_body(fake))


async def test_a_silent_video_gives_an_empty_transcript(fake, config):
    analysis = await analyze(frames(1), WAV, config)
    assert analysis.transcript == ""
    assert analysis.inventory is not None
    assert any("transcript is empty" in text for text in user_texts(chat_body(fake)))


async def test_audio_the_speech_model_rejects_does_not_cost_the_inventory(fake, config):
    fake.fail(400, endpoint=TRANSCRIPTION)
    analysis = await analyze(frames(2), WAV, config)
    assert analysis.inventory is not None and analysis.transcript is None
    assert analysis.warnings and "400" in analysis.warnings[0]
    assert len(fake.received(TRANSCRIPTION)) == 1


async def test_a_transcription_that_times_out_fails_the_analysis_retryably(fake, config):
    fake.inject(Fault(delay_s=2), times=2, endpoint=TRANSCRIPTION)
    error = await failure(frames(1), WAV, replace(config, timeout_s=0.3, max_retries=1))
    assert (error.code, error.retryable) == ("analysis_timeout", True)
    assert error.message.startswith("transcription")
    assert fake.received(CHAT) == []


# Retries (the openai client's) and error classification


async def test_a_429_is_retried_after_the_retry_after_delay(fake, config):
    fake.fail(429, retry_after="1")
    analysis = await analyze(frames(1), None, config)
    first, second = fake.received(CHAT)
    assert second.at - first.at >= 1.0
    assert analysis.inventory is not None


async def test_server_errors_are_retried_with_backoff_then_succeed(fake, config):
    fake.fail(500)
    fake.fail(503)
    analysis = await analyze(frames(1), None, config)
    attempts = [r.at for r in fake.received(CHAT)]
    assert len(attempts) == 3
    assert attempts[1] - attempts[0] >= 0.5 * 0.75
    assert attempts[2] - attempts[1] >= 1.0 * 0.75
    assert analysis.inventory is not None


@pytest.mark.parametrize("status", [500, 429])
async def test_rate_limits_and_server_errors_left_after_retries_are_retryable(fake, config, status):
    fake.fail(status, times=2, retry_after="0.1" if status == 429 else None)
    error = await failure(frames(1), None, replace(config, max_retries=1))
    assert (error.code, error.retryable) == ("analysis_failed", True)
    assert str(status) in error.message
    assert len(fake.received(CHAT)) == 2


async def test_an_exhausted_quota_is_not_retryable(fake, config):
    fake.fail(429, code="insufficient_quota")
    error = await failure(frames(1), None, replace(config, max_retries=0))
    assert (error.code, error.retryable) == ("analysis_failed", False)


async def test_a_bad_key_fails_at_once_and_is_not_retryable(fake, config):
    error = await failure(frames(1), None, replace(config, api_key="sk-wrong"))
    assert (error.code, error.retryable) == ("analysis_failed", False)
    assert "401" in error.message
    assert len(fake.received(CHAT)) == 1


async def test_a_model_slower_than_the_timeout_is_retried_then_an_analysis_timeout(fake, config):
    fake.inject(Fault(delay_s=2), times=2)
    error = await failure(frames(1), None, replace(config, timeout_s=0.3, max_retries=1))
    assert (error.code, error.retryable) == ("analysis_timeout", True)
    assert len(fake.received(CHAT)) == 2


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault(content='{"rooms": [{"name": "Salon", "items": ['), "not JSON"),
        (Fault(content='["Salon"]'), "not a JSON object"),
        (Fault(content='{"rooms": [{"name": "Salon"}]}'), "does not match the inventory schema"),
        (Fault(content='{"rooms": [{"name": "Salon", "items": [{"catalogue_id": "hoverboard", "quantity": 1, '
                       '"confidence": 1, "frames": [], "excluded": false}], "other_items": []}]}'),
         "does not match the inventory schema"),
        (Fault(refusal="I can't help with that."), "refused: I can't help with that."),
        (Fault(finish_reason="length"), "cut at max_output_tokens=16384"),
        (Fault(finish_reason="content_filter"), "content filter"),
        (Fault(content=""), "empty"),
    ],
)
async def test_an_answer_that_is_not_the_inventory_fails_without_retry(fake, config, fault, reason):
    fake.inject(fault)
    error = await failure(frames(1), None, config)
    assert (error.code, error.retryable) == ("analysis_failed", False)
    assert reason in error.message
    assert len(fake.received(CHAT)) == 1


async def test_a_response_body_that_is_not_json_is_a_retryable_failure(fake, config):
    fake.inject(Fault(body=b'{"id": "chatcmpl-1", "choices": ['))
    error = await failure(frames(1), None, config)
    assert (error.code, error.retryable) == ("analysis_failed", True)


async def test_an_unreachable_api_is_a_retryable_failure():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/v1"
    error = await failure(frames(1), None, AnalyzerConfig(base_url=url, api_key="sk", max_retries=0))
    assert (error.code, error.retryable) == ("analysis_failed", True)


# Batches


def batches_sent(fake: FakeOpenAI, sent: list[tuple[float, bytes]]) -> list[list[int]]:
    """The frame indexes of each request, in frame order (the requests run at once, so arrive in any order)."""
    index = {jpeg_: n for n, (_, jpeg_) in enumerate(sent)}
    return sorted([index[j] for j in sent_jpegs(r.json)] for r in fake.received(CHAT))


async def test_frames_go_in_batches_of_the_configured_size_that_share_one_frame(fake, config):
    sent = frames(25)
    await analyze(sent, None, replace(config, batch_frames=9))
    assert batches_sent(fake, sent) == [list(range(0, 9)), list(range(8, 17)), list(range(16, 25))]
    bodies = [r.json for r in fake.received(CHAT)]
    assert {b["messages"][0]["content"] for b in bodies} == {instructions()}
    parts = sorted(next(t for t in user_texts(b) if "part " in t) for b in bodies)
    assert [p.split("part ")[1][:6] for p in parts] == ["1 of 3", "2 of 3", "3 of 3"]
    assert all("overlap by one frame" in p and "consecutive" in p for p in parts)


async def test_a_video_that_fits_one_batch_is_one_request_without_parts(fake, config):
    await analyze(frames(12), None, config)
    assert len(fake.received(CHAT)) == 1
    assert "12 frames from the video, in order." in user_texts(chat_body(fake))


async def test_an_object_in_a_shared_frame_is_listed_once_with_frames_over_the_whole_video(fake, config):
    sent = frames(25)
    analysis = await analyze(sent, None, replace(config, batch_frames=9))
    [room] = analysis.inventory.rooms
    ids = list(catalogue.ids())
    assert [(i.catalogue_id, i.frames) for i in room.items] == [(item_for(j, ids), [n]) for n, (_, j) in enumerate(sent)]
    assert analysis.usage.frames_sent == 27 and analysis.usage.requests == 3


async def test_without_timings_every_batch_hears_the_whole_transcript_and_what_it_names_is_listed_once(
        fake, config):
    async with model_client(config) as client:
        vision = await describe(frames(25), "Le piano reste ici.", replace(config, batch_frames=9), client)
    assert len(fake.received(CHAT)) == 3
    assert all("<transcript>\nLe piano reste ici.\n</transcript>" in "\n".join(user_texts(r.json))
               and "The transcript is of the whole video" in "\n".join(user_texts(r.json))
               for r in fake.received(CHAT))
    pianos = [i for r in vision.inventory.rooms for i in r.items if i.catalogue_id == "piano_upright"]
    assert len(pianos) == 1 and pianos[0].excluded


NARRATION = {440: "cuisine", 660: "salon", 880: "chambre", 1100: "bureau"}
"""One word a room, said as a tone the fake's ear tells apart (``fake_speech.tone_words``)."""


async def test_each_batch_hears_what_was_said_while_its_frames_were_filmed_not_another_rooms(fake, config):
    """Four rooms of 20 s each, the narration of each said in it; a frame every 4 s, six to a batch."""
    fake.hears = tone_words(NARRATION)
    said = [(20 * room + 1, 20 * room + 17, tone) for room, tone in enumerate(NARRATION)]
    filmed = [(2.0 + 4 * i, jpeg(i)) for i in range(20)]
    analysis = await analyze(filmed, make_tones_wav(said, duration=80),
                             replace(config, batch_frames=6, transcript_piece_s=25))
    assert analysis.transcript == "[00:00] cuisine [00:20] salon [00:40] chambre [01:00] bureau"
    requests = fake.received(CHAT)
    assert len(requests) == 4
    for request in requests:
        texts = "\n".join(user_texts(request.json))
        times = [float(t) for t in re.findall(r"Frame \d+ at ([\d.]+) s", texts)]
        heard = set(re.search(r"<transcript>\n(.*)\n</transcript>", texts, re.S).group(1).split()) & set(
            NARRATION.values())
        rooms = {room for room in range(4) for t in times if 20 * room <= t < 20 * room + 20}
        near = {room for room in range(4) for t in times if 20 * room - 5 < t < 20 * room + 25}
        assert {list(NARRATION.values())[room] for room in rooms} <= heard, (times, heard)
        assert heard <= {list(NARRATION.values())[room] for room in near}, (times, heard)
        assert "The transcript is what was said while this part was filmed" in texts
    texts = ["\n".join(user_texts(request.json)) for request in requests]
    first = min(texts, key=lambda text: float(re.search(r"Frame \d+ at ([\d.]+) s", text).group(1)))
    assert "bureau" not in first and "chambre" not in first, "the batch filmed first (requests run at once)"


def test_the_time_an_analysis_needs_grows_with_its_batches_and_its_soundtrack():
    """150 frames are 14 batches of 12, 4 rounds of 4 at once; 10 minutes of audio are 8 pieces
    of 75 to 90 s, 2 rounds; one round for a batch asked again: 7 rounds of up to 180 s each."""
    config = AnalyzerConfig(base_url="http://model", api_key="sk-test")
    assert time_needed(150, 600.0, config) == 7 * 180
    assert time_needed(8, 0.0, config) == 2 * 180
    assert time_needed(150, 600.0, replace(config, batch_concurrency=14)) == (1 + 1 + 1) * 180


async def test_batches_are_asked_at_once(fake, config):
    fake.inject(Fault(delay_s=0.5), times=3)
    await analyze(frames(25), None, replace(config, batch_frames=9))
    arrivals = sorted(r.at for r in fake.received(CHAT))
    assert arrivals[-1] - arrivals[0] < 0.4


async def test_no_more_batches_than_the_concurrency_are_asked_at_once(fake, config):
    fake.inject(Fault(delay_s=0.3), times=3)
    await analyze(frames(25), None, replace(config, batch_frames=9, batch_concurrency=1))
    arrivals = sorted(r.at for r in fake.received(CHAT))
    assert all(after - before >= 0.3 for before, after in zip(arrivals, arrivals[1:]))


async def test_a_failed_batch_is_asked_again_alone_and_the_others_are_kept(fake, config):
    sent = frames(25)
    fake.fail(500)
    analysis = await analyze(sent, None, replace(config, batch_frames=9, max_retries=0, batch_retries=1))
    asked = Counter(tuple(b) for b in batches_sent(fake, sent))
    assert set(asked) == {tuple(range(0, 9)), tuple(range(8, 17)), tuple(range(16, 25))}
    assert sorted(asked.values()) == [1, 1, 2]
    assert [i.frames for i in analysis.inventory.rooms[0].items] == [[n] for n in range(25)]


async def test_a_batch_whose_answer_is_not_the_inventory_is_asked_again_alone(fake, config):
    fake.inject(Fault(content='{"rooms": [{"name": "Salon", "items": ['))
    analysis = await analyze(frames(25), None, replace(config, batch_frames=9, batch_retries=1))
    assert len(fake.received(CHAT)) == 4
    assert [i.frames for i in analysis.inventory.rooms[0].items] == [[n] for n in range(25)]


async def test_a_refusal_is_not_asked_again(fake, config):
    fake.inject(Fault(refusal="I can't help with that."))
    error = await failure(frames(25), None, replace(config, batch_frames=9, batch_retries=1))
    assert (error.code, error.retryable) == ("analysis_failed", False)
    assert "refused" in error.message
    assert len(fake.received(CHAT)) <= 3


async def test_a_batch_that_keeps_failing_fails_the_analysis_retryably(fake, config):
    fake.fail(503, times=20)
    error = await failure(frames(25), None, replace(config, batch_frames=9, max_retries=0, batch_retries=1))
    assert (error.code, error.retryable) == ("analysis_failed", True)
    assert "503" in error.message


async def test_an_answer_cut_at_the_output_cap_splits_its_batch_in_halves_asked_again(fake, config):
    sent = frames(12)
    analysis = await analyze(sent, None, replace(config, max_output_tokens=300))
    assert [a["choices"][0]["finish_reason"] for a in fake.answers][0] == "length"
    assert all(a["choices"][0]["finish_reason"] == "stop" for a in fake.answers[1:])
    assert sent_jpegs(fake.received(CHAT)[0].json) == [j for _, j in sent]
    assert len(fake.received(CHAT)) >= 3
    [room] = analysis.inventory.rooms
    assert [i.frames for i in room.items] == [[n] for n in range(12)]


async def test_a_one_frame_answer_cut_at_the_output_cap_fails_without_retry(fake, config):
    error = await failure(frames(1), None, replace(config, max_output_tokens=70))
    assert (error.code, error.retryable) == ("analysis_failed", False)
    assert "cut at max_output_tokens=70" in error.message


# Models, limits and usage as the API has them


async def test_reasoning_effort_goes_to_reasoning_models_only(fake, config):
    await analyze(frames(1), None, config)
    assert chat_body(fake)["reasoning_effort"] == "low"
    await analyze(frames(1), None, replace(config, vision_model="gpt-4o-mini"))
    assert "reasoning_effort" not in chat_body(fake)
    await analyze(frames(1), None, replace(config, reasoning_effort=None))
    assert "reasoning_effort" not in chat_body(fake)


async def test_the_default_model_is_one_the_sdk_does_not_mark_for_shutdown():
    deprecations = openai.types.shared.chat_model.__doc__ or ""
    default = AnalyzerConfig(base_url=None, api_key=None).vision_model
    assert default in openai.types.shared.ChatModel.__args__
    assert f'"{default}"' not in deprecations


async def test_the_default_output_cap_is_within_every_vision_model_limit():
    cap = AnalyzerConfig(base_url=None, api_key=None).max_output_tokens
    assert cap >= 16_000
    assert all(cap <= model.max_output for model in MODELS.values() if model.kind == CHAT)


@pytest.mark.parametrize("model", ["o1-mini", "gpt-7-imaginary"])
async def test_a_shut_down_or_unknown_model_fails_at_once_and_is_not_retryable(fake, config, model):
    error = await failure(frames(1), None, replace(config, vision_model=model))
    assert (error.code, error.retryable) == ("analysis_failed", False)
    assert "does not exist" in error.message
    assert len(fake.received(CHAT)) == 1


async def test_gpt_4o_mini_is_gone_after_its_shutdown_date(server, config):
    server.app = (fake := FakeOpenAI(today=date(2027, 1, 15))).app
    error = await failure(frames(1), None, replace(config, vision_model="gpt-4o-mini"))
    assert "404" in error.message and not error.retryable
    server.app = (fake := FakeOpenAI(today=date(2027, 1, 13))).app
    assert (await analyze(frames(1), None, replace(config, vision_model="gpt-4o-mini"))).inventory is not None


async def test_the_api_answers_for_the_models_it_has(server):
    server.app = FakeOpenAI(today=date(2027, 1, 15)).app
    async with openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="sk-test", max_retries=0) as client:
        model = await client.models.retrieve("gpt-5.4-mini")
        assert (model.id, model.object) == ("gpt-5.4-mini", "model")
        with pytest.raises(openai.NotFoundError) as gone:
            await client.models.retrieve("gpt-4o-mini")
    assert gone.value.code == "model_not_found"


async def test_an_output_cap_past_the_model_limit_is_a_bad_request(fake, config):
    error = await failure(frames(1), None, replace(config, vision_model="gpt-4o-mini", max_output_tokens=20_000))
    assert (error.code, error.retryable) == ("analysis_failed", False)
    assert "max_tokens is too large" in error.message


@pytest.mark.parametrize(("model", "detail", "per_image"), [
    ("gpt-4o-mini", "low", 2833), ("gpt-4o-mini", "high", 2833 + 4 * 5667), ("gpt-4o", "high", 85 + 4 * 170),
    ("gpt-4.1-mini", "low", 934), ("gpt-5.4-mini", "high", 934),
])
async def test_images_cost_what_the_model_documents(fake, config, model, detail, per_image):
    """1024x576 frames: 4 tiles of 512 px, or 32 x 18 patches of 32 px (x 1.62 for the mini models)."""
    one = [(0.0, jpeg(1, (1024, 576)))]
    await analyze(one, None, replace(config, vision_model=model, image_detail=detail))
    await analyze(one * 2, None, replace(config, vision_model=model, image_detail=detail))
    single, double = (a["usage"]["prompt_tokens_details"]["image_tokens"] for a in fake.answers)
    assert (single, double) == (per_image, 2 * per_image)


async def test_a_prompt_past_the_context_window_is_refused(fake, config):
    big = [(n * 1.0, jpeg(n, (1024, 576))) for n in range(6)]
    error = await failure(big, None, replace(config, vision_model="gpt-4o-mini", image_detail="high"))
    assert "maximum context length" in error.message and not error.retryable


async def test_usage_is_summed_as_reported_and_priced_from_the_table(fake, config):
    prices = {"gpt-5.4-mini": Price(input=1.0, cached_input=0.1, output=10.0)}
    analysis = await analyze(frames(25), None, replace(config, batch_frames=9, prices=prices))
    reported = [a["usage"] for a in fake.answers]
    assert analysis.usage.input_tokens == sum(u["prompt_tokens"] for u in reported)
    assert analysis.usage.image_tokens == sum(u["prompt_tokens_details"]["image_tokens"] for u in reported) > 0
    assert analysis.usage.text_tokens == sum(u["prompt_tokens_details"]["text_tokens"] for u in reported) > 0
    assert analysis.usage.image_tokens + analysis.usage.text_tokens == analysis.usage.input_tokens
    assert analysis.usage.output_tokens == sum(u["completion_tokens"] for u in reported)
    assert analysis.usage.reasoning_tokens == sum(u["completion_tokens_details"]["reasoning_tokens"] for u in reported)
    assert analysis.tokens == analysis.usage.input_tokens + analysis.usage.output_tokens
    expected = (analysis.usage.input_tokens * 1.0 + analysis.usage.output_tokens * 10.0) / 1e6
    assert analysis.cost_usd == pytest.approx(expected, abs=1e-6)


async def test_a_model_missing_from_the_price_table_has_no_cost(fake, config):
    analysis = await analyze(frames(2), None, replace(config, prices={}))
    assert analysis.cost_usd is None and analysis.usage.input_tokens > 0


async def test_a_soundtrack_over_25_mib_is_sent_within_the_limit_and_heard_whole(fake, config):
    wav = make_sine_wav(duration=840.0)
    assert len(wav) > 25 * 1024 * 1024
    analysis = await analyze(frames(1), wav, config)
    assert fake.received(TRANSCRIPTION)
    assert all("413" not in warning and "skipped" not in warning for warning in analysis.warnings)
    assert sum(fake.heard) == pytest.approx(840.0, abs=1.0)
    assert analysis.inventory is not None


# A generated home tour, seen by a fake model that reads the objects' codes


@pytest.fixture(scope="module")
def tour() -> Tour:
    return make_tour(rooms=4, objects_per_room=4, width=320, height=180, fps=10, still_s=2.0, walk_s=1.0, seed=3)


def tour_frames(tour: Tour, every_s: float) -> list[tuple[float, bytes]]:
    out: list[tuple[float, bytes]] = []
    with av.open(io.BytesIO(tour.data)) as container:
        for frame in container.decode(video=0):
            t = float(frame.pts * frame.time_base)
            if not out or t - out[-1][0] >= every_s - 1e-6:
                buffer = io.BytesIO()
                frame.to_image().save(buffer, "JPEG", quality=85)
                out.append((t, buffer.getvalue()))
    return out


async def test_every_object_of_a_tour_is_listed_once_in_its_room_across_batches(server, tour):
    server.app = (fake := FakeOpenAI(sees=tour_sight(tour))).app
    sent = tour_frames(tour, 0.5)
    config = AnalyzerConfig(base_url=server.url + "/v1", api_key=fake.api_key, batch_frames=8)
    analysis = await analyze(sent, None, config)
    spans = plan(len(sent), 8)
    assert len(fake.received(CHAT)) == len(spans) >= 3
    read = {code for _, j in sent for code in read_codes(j)}
    shared = {code for span in spans[1:] for code in read_codes(sent[span.start][1])}
    assert shared, "some object must be in a frame two batches share"
    truth = {o.id: o for o in tour.objects}
    assert {o.id for o in tour.objects if any(o.visible_at(t) for t, _ in sent)} <= read
    ids = list(catalogue.ids())
    listed = sorted((room.name, item.catalogue_id) for room in analysis.inventory.rooms for item in room.items)
    assert listed == sorted((truth[code].room, object_item(code, ids)) for code in read)
    assert [room.name for room in analysis.inventory.rooms] == [name for name, *_ in tour.rooms]


# Configuration


async def test_without_key_or_base_url_the_analysis_is_skipped_with_the_reason():
    analysis = await analyze(frames(1), WAV, AnalyzerConfig(base_url=None, api_key=None))
    assert analysis.inventory is None and analysis.tokens == 0
    assert analysis.skipped_reason == SKIPPED_REASON
    assert "OPENAI_API_KEY" in SKIPPED_REASON and "OPENAI_BASE_URL" in SKIPPED_REASON


async def test_a_base_url_alone_is_enough_for_a_server_without_keys(server):
    server.app = (fake := FakeOpenAI(api_key="no-key")).app
    config = AnalyzerConfig(base_url=server.url + "/v1", api_key=None)
    assert config.enabled
    analysis = await analyze(frames(1), None, config)
    assert analysis.inventory is not None
    assert fake.received(CHAT)[0].headers["authorization"] == "Bearer no-key"


async def test_no_frames_is_a_failure_not_an_empty_inventory(config):
    error = await failure([], WAV, config)
    assert (error.code, error.retryable) == ("analysis_failed", False)


@pytest.mark.parametrize("bad", [{"image_detail": "medium"}, {"timeout_s": 0}, {"max_retries": -1},
                                 {"max_output_tokens": 0}])
def test_a_bad_configuration_is_refused_at_once(bad):
    with pytest.raises(ValueError):
        AnalyzerConfig(base_url=None, api_key="sk", **bad)


# The prompt and the parser, directly


def walk_objects(node):
    if isinstance(node, dict):
        if node.get("type") == "object":
            yield node
        for child in node.values():
            yield from walk_objects(child)
    elif isinstance(node, list):
        for child in node:
            yield from walk_objects(child)


def walk_enums(node):
    if isinstance(node, dict):
        if "enum" in node:
            yield node["enum"]
        for child in node.values():
            yield from walk_enums(child)
    elif isinstance(node, list):
        for child in node:
            yield from walk_enums(child)


def test_the_schema_is_strict_everywhere_and_enumerates_the_catalogue():
    spec = response_format()["json_schema"]
    assert spec["strict"] is True
    objects = list(walk_objects(spec["schema"]))
    assert len(objects) >= 4
    for node in objects:
        assert node["additionalProperties"] is False
        assert node["required"] == list(node["properties"])
    assert list(walk_enums(spec["schema"])) == [list(catalogue.ids())]


def test_the_instructions_cover_exclusions_and_list_every_catalogue_id():
    text = instructions()
    assert "excluded" in text and "transcript" in text and "le piano vient aussi" in text
    assert all(f"\n{cid}: " in text for cid in catalogue.ids())


def test_a_long_transcript_is_cut():
    messages = build_messages(frames(1), "blah " * 5000, "low")
    transcript = messages[1]["content"][-1]["text"]
    assert len(transcript) < MAX_TRANSCRIPT_CHARS + 200 and "[...]" in transcript


def test_an_unknown_detail_level_is_refused():
    with pytest.raises(ValueError):
        build_messages(frames(1), None, "ultra")


def answer(*rooms: dict) -> dict:
    return {"rooms": list(rooms)}


def room(name: str, items=(), other_items=()) -> dict:
    return {"name": name, "items": list(items), "other_items": list(other_items)}


def line(cid: str, quantity: int = 1, **fields) -> dict:
    return {"catalogue_id": cid, "quantity": quantity, "confidence": 0.9, "frames": [], "excluded": False, **fields}


def test_the_model_values_are_clamped_not_trusted():
    inventory = parse_inventory(answer(room("  Salon  ", [
        line("chair", 0),
        line("chair", 4, confidence=1.7, frames=[-1, 0, 2, 9]),
        line("sofa_3_seats", 5000, confidence=-0.2),
    ])), frame_count=3)
    [salon] = inventory.rooms
    assert salon.name == "Salon"
    chairs, sofas = salon.items
    assert (chairs.quantity, chairs.confidence, chairs.frames) == (4, 1.0, [0, 2])
    assert (sofas.quantity, sofas.confidence) == (999, 0.0)


def test_rooms_with_the_same_name_are_merged_and_empty_rooms_dropped():
    inventory = parse_inventory(answer(room("Salon", [line("chair")]), room("Cave"), room("salon", [line("armchair")])))
    assert [(r.name, [i.catalogue_id for i in r.items]) for r in inventory.rooms] == [("Salon", ["chair", "armchair"])]


def test_handling_flags_come_from_the_catalogue():
    [piano] = parse_inventory(answer(room("Salon", [line("piano_upright")]))).rooms[0].items
    entry = catalogue.lookup("piano_upright")
    assert (piano.fragile, piano.heavy) == (entry.fragile, entry.heavy)
    assert piano.needs_disassembly == entry.needs_disassembly


@pytest.mark.parametrize(
    "payload",
    [
        answer(room("Salon", [line("hoverboard")])),
        answer(room("Salon", [line("chair", surprise=True)])),
        answer(room("Salon", [line("chair", quantity="2")])),
        {"rooms": [{"name": "Salon", "items": []}]},
        {},
    ],
)
def test_an_answer_outside_the_schema_is_a_value_error(payload):
    with pytest.raises(ValueError):
        parse_inventory(payload)
