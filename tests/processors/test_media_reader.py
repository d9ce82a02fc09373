"""ChunkReader: a seekable file over chunks that behaves like BytesIO and never holds the whole upload."""

from __future__ import annotations

import io
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.decode import DecodeError, decode_media
from processors.media_reader import ChunkReader
from tests.support.videos import make_video


def chunked(data: bytes, chunk_size: int, cache_chunks: int = 4) -> ChunkReader:
    return ChunkReader(len(data), chunk_size, lambda i: data[i * chunk_size : (i + 1) * chunk_size], cache_chunks)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("read"), st.integers(-1, 3000)),
        st.tuples(st.just("seek"), st.integers(-200, 5000), st.sampled_from([io.SEEK_SET, io.SEEK_CUR, io.SEEK_END])),
        st.tuples(st.just("readinto"), st.integers(0, 3000)),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None, database=None)
@given(data=st.binary(max_size=5000), chunk_size=st.integers(1, 700), cache_chunks=st.integers(1, 5), steps=operations)
def test_reads_and_seeks_behave_like_bytesio(
    data: bytes, chunk_size: int, cache_chunks: int, steps: list[tuple[Any, ...]]
) -> None:
    reader, reference = chunked(data, chunk_size, cache_chunks), io.BytesIO(data)
    for step in steps:
        if step[0] == "read":
            assert reader.read(step[1]) == reference.read(step[1])
        elif step[0] == "readinto":
            mine, theirs = bytearray(step[1]), bytearray(step[1])
            assert reader.readinto(mine) == reference.readinto(theirs)
            assert mine == theirs
        else:
            _, offset, whence = step
            target = {io.SEEK_SET: 0, io.SEEK_CUR: reference.tell(), io.SEEK_END: len(data)}[whence] + offset
            if target < 0:
                with pytest.raises(ValueError):
                    reader.seek(offset, whence)
                continue
            assert reader.seek(offset, whence) == reference.seek(offset, whence)
        assert reader.tell() == reference.tell()


def test_a_read_is_short_only_at_end_of_file() -> None:
    data = bytes(range(256)) * 10
    reader = chunked(data, 7)
    assert reader.read(1000) == data[:1000]
    reader.seek(2500)
    assert reader.read(1000) == data[2500:]
    assert reader.read(10) == b""
    reader.seek(10_000)
    assert reader.read(10) == b""


def test_the_cache_keeps_only_the_most_recent_chunks() -> None:
    data = bytes(1000)
    reader = chunked(data, 100, cache_chunks=3)
    reader.read()
    assert reader.fetches == 10
    reader.seek(700)
    reader.read(300)
    assert reader.fetches == 10, "chunks 7-9 are the three most recent and must come from the cache"
    reader.seek(650)
    reader.read(10)
    assert reader.fetches == 11, "chunk 6 was evicted and must be fetched again"
    reader.seek(950)
    reader.read(10)
    assert reader.fetches == 11
    reader.seek(750)
    reader.read(10)
    assert reader.fetches == 12, "chunk 7 was the least recently used and got evicted by chunk 6"


def test_a_chunk_of_the_wrong_length_is_an_error_not_silent_garbage() -> None:
    reader = ChunkReader(1000, 100, lambda i: bytes(99))
    with pytest.raises(OSError, match="chunk 0"):
        reader.read(10)


def test_a_closed_reader_refuses_to_read() -> None:
    reader = chunked(b"abc" * 100, 16)
    reader.read(20)
    reader.close()
    assert reader.closed
    with pytest.raises(ValueError):
        reader.read(1)


def test_decoding_through_chunks_equals_decoding_from_bytes() -> None:
    for data in (make_video(duration=3.0), make_video(container="webm", codec="vp9", duration=3.0)):
        reader = chunked(data, 8 * 1024)
        through_chunks, from_bytes = decode_media(reader), decode_media(io.BytesIO(data))
        assert [f.jpeg for f in through_chunks.frames] == [f.jpeg for f in from_bytes.frames]
        assert [f.timestamp for f in through_chunks.frames] == [f.timestamp for f in from_bytes.frames]
        assert through_chunks.audio_wav == from_bytes.audio_wav
        assert through_chunks.duration == from_bytes.duration


def test_a_video_without_audio_is_decoded_without_reading_most_of_it() -> None:
    data = make_video(width=640, height=480, fps=12, duration=40.0, gop=12, audio=None, noise=7, preset="ultrafast")
    chunk_size = 32 * 1024
    reader = chunked(data, chunk_size)
    media = decode_media(reader)
    chunks = -(-len(data) // chunk_size)
    assert len(media.frames) == 8
    assert reader.fetches < chunks / 2, f"fetched {reader.fetches} of {chunks} chunks"


def test_a_failing_fetch_becomes_a_decode_error_carrying_the_cause() -> None:
    data = make_video(duration=2.0)

    class Expired(Exception):
        pass

    def fetch(index: int) -> bytes:
        if index >= 2:
            raise Expired(index)
        return data[index * 4096 : (index + 1) * 4096]

    with pytest.raises(DecodeError) as caught:
        decode_media(ChunkReader(len(data), 4096, fetch))
    assert caught.value.code == "decode_failed"
    assert isinstance(caught.value.__cause__, Expired)
