"""The analyzer, through the real ``openai`` client against a local fake of the API.

What is specified: what the request carries (frames, detail, strict schema, token budget, the
transcript), how the answer becomes an inventory (catalogue volumes, exclusions), how the
client's retries behave (Retry-After, backoff, timeouts) and which failures may be retried.
"""

from __future__ import annotations

import base64
import io
import socket
from collections.abc import Iterator
from dataclasses import replace

import pytest
from PIL import Image

from schemas import catalogue
from processors.analyzer import SKIPPED_REASON, AnalysisError, AnalyzerConfig, analyze
from processors.prompt import (
    MAX_TRANSCRIPT_CHARS,
    build_messages,
    instructions,
    parse_inventory,
    response_format,
)
from tests.support.fake_openai import CHAT, TRANSCRIPTION, FakeOpenAI, Fault, LocalServer, item_for

WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(200))


def jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 12), (seed * 53 % 256, seed * 97 % 256, 120)).save(buffer, "JPEG")
    return buffer.getvalue()


def frames(count: int) -> list[tuple[float, bytes]]:
    return [(index * 2.5, jpeg(index)) for index in range(count)]


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer(FakeOpenAI().app) as running:
        yield running


@pytest.fixture
def fake(server: LocalServer) -> FakeOpenAI:
    """A fresh fake API for each test, behind the module's server."""
    server.app = (fresh := FakeOpenAI(transcript="")).app
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


async def test_the_audio_is_uploaded_as_a_wav_file_for_transcription(fake, config):
    fake.transcript = "  Bon, ici c'est la cuisine.  "
    analysis = await analyze(frames(1), WAV, config)
    [upload] = fake.received(TRANSCRIPTION)
    assert upload.form["model"] == "whisper-1"
    assert (upload.form["file"].filename, upload.form["file"].content_type) == ("audio.wav", "audio/wav")
    assert upload.form["file"].data == WAV
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
