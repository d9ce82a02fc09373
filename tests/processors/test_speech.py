"""The soundtrack made fit for the transcription API: Ogg/Opus, in pieces under its limits, in order."""

from __future__ import annotations

import io

import av
import pytest

from processors.speech import MAX_PIECE_S, MAX_REQUEST_BYTES, clock_time, encode_opus, read_wav, speech_pieces
from tests.support.fake_speech import tone_words
from tests.support.videos import make_sine_wav, make_tones_wav


def seconds_in(ogg: bytes) -> float:
    with av.open(io.BytesIO(ogg)) as container:
        assert container.format.name == "ogg" and container.streams.audio[0].codec_context.name in ("opus", "libopus")
        return sum(frame.samples / frame.sample_rate for frame in container.decode(audio=0))


def test_fifteen_minutes_of_speech_fit_one_request_in_an_eighth_of_the_wav():
    wav = make_sine_wav(duration=900)
    [piece] = speech_pieces(wav, piece_seconds=MAX_PIECE_S)
    assert len(wav) > MAX_REQUEST_BYTES, "as WAV, 15 minutes would be refused"
    assert len(piece.data) < len(wav) / 8
    assert (piece.start_s, piece.duration_s) == (0, 900)
    assert seconds_in(piece.data) == pytest.approx(900, abs=0.1)


def test_a_soundtrack_is_cut_into_consecutive_pieces_no_longer_than_asked():
    pieces = speech_pieces(make_sine_wav(duration=61), piece_seconds=25)
    assert len(pieces) == 3 and pieces[0].start_s == 0
    assert all(later.start_s == pytest.approx(p.start_s + p.duration_s) for p, later in zip(pieces, pieces[1:]))
    assert all(25 * 0.75 <= p.duration_s <= 25 for p in pieces[:-1]) and pieces[-1].duration_s <= 25
    assert sum(seconds_in(p.data) for p in pieces) == pytest.approx(61, abs=0.1)


def test_each_cut_falls_in_the_pause_before_the_longest_piece_so_no_word_is_split():
    said = [(1, 17, 440), (21, 37, 660), (41, 57, 880), (61, 77, 1100)]
    pieces = speech_pieces(make_tones_wav(said, duration=80), piece_seconds=25)
    cuts = [p.start_s for p in pieces[1:]]
    assert len(cuts) == 3
    assert all(any(end <= cut <= end + 4 for _, end, _ in said) for cut in cuts), cuts
    assert cuts[0] == pytest.approx(21, abs=0.05), "the latest quiet moment, so pieces stay long"
    ear = tone_words({440: "cuisine", 660: "salon", 880: "chambre", 1100: "bureau"})
    assert [ear(p.data) for p in pieces] == ["cuisine", "salon", "chambre", "bureau"]


def test_audio_still_too_large_after_encoding_is_cut_until_every_piece_fits():
    pieces = speech_pieces(make_sine_wav(duration=20), max_bytes=20_000)
    assert len(pieces) > 1 and all(len(p.data) <= 20_000 for p in pieces)
    assert pieces[-1].start_s + pieces[-1].duration_s == pytest.approx(20)


def test_an_empty_soundtrack_has_no_piece():
    assert speech_pieces(make_sine_wav(duration=0)) == []


def test_bytes_that_are_not_a_pcm_wav_are_a_value_error():
    with pytest.raises(ValueError, match="WAV"):
        read_wav(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(200))


def test_opus_takes_any_rate_the_decoder_may_give():
    samples, rate = read_wav(make_sine_wav(duration=2, rate=44_100))
    assert seconds_in(encode_opus(samples, rate)) == pytest.approx(2, abs=0.05)


@pytest.mark.parametrize(("seconds", "shown"), [(0, "00:00"), (83.9, "01:23"), (3725, "1:02:05")])
def test_pieces_are_marked_with_their_clock_time(seconds, shown):
    assert clock_time(seconds) == shown
