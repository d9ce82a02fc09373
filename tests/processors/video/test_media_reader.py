"""Files over chunks: ChunkReader seeks like BytesIO, ArrivingReader reads forward as chunks arrive,
OrderedDigest hashes whatever order they are read in; none holds the whole upload."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.video import DecodeError, decode_media
from processors.video.media_reader import ArrivingReader, ChunkReader, OrderedDigest
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


def test_a_video_without_audio_is_read_at_most_about_once() -> None:
    """Candidates a second apart are every keyframe of a phone video: the seeking decode reads them
    and skips the frames between, never the file over and over."""
    data = make_video(width=640, height=480, fps=12, duration=40.0, gop=12, audio=None, noise=7, preset="ultrafast")
    chunk_size = 32 * 1024
    reader = chunked(data, chunk_size)
    media = decode_media(reader)
    chunks = -(-len(data) // chunk_size)
    assert len(media.frames) >= 2
    assert reader.fetches < chunks * 0.8, f"fetched {reader.fetches} of {chunks} chunks"


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


@given(st.binary(max_size=5000), st.integers(1, 700), st.integers(1, 900))
def test_an_arriving_reader_reads_the_bytes_in_order_fetching_each_chunk_once(data: bytes, chunk_size: int, read_size: int) -> None:
    fetched: list[int] = []

    def fetch(index: int) -> bytes:
        fetched.append(index)
        return data[index * chunk_size : (index + 1) * chunk_size]

    reader = ArrivingReader(len(data), chunk_size, fetch)
    out = b"".join(iter(lambda: reader.read(read_size), b""))
    assert out == data and not reader.seekable()
    assert fetched == list(range(-(-len(data) // chunk_size)))


def test_an_arriving_reader_refuses_a_chunk_of_the_wrong_length() -> None:
    reader = ArrivingReader(1000, 100, lambda i: bytes(99))
    with pytest.raises(OSError, match="expected 100"):
        reader.read(50)


@given(st.binary(max_size=3000), st.integers(1, 500), st.permutations(range(8)))
def test_an_ordered_digest_hashes_the_whole_upload_whatever_the_read_order(data: bytes, chunk_size: int, order: list[int]) -> None:
    count = max(1, -(-len(data) // chunk_size))
    digest = OrderedDigest(count)
    fetched: list[int] = []

    def fetch(index: int) -> bytes:
        fetched.append(index)
        return data[index * chunk_size : (index + 1) * chunk_size]

    for index in [i for i in order if i < count]:
        digest.offer(index, fetch(index))
    before = len(fetched)
    assert digest.hexdigest(fetch) == hashlib.sha256(data).hexdigest()
    assert len(fetched) - before == count - min(count, _in_order_prefix([i for i in order if i < count]))


@given(st.binary(min_size=1, max_size=3000), st.integers(1, 500), st.permutations(range(8)))
def test_chunks_read_out_of_order_by_a_hashing_fetcher_then_finished_give_the_files_sha256(
    data: bytes, chunk_size: int, order: list[int]
) -> None:
    """The decoder's fetcher feeds the digest with every chunk it reads, those ``hexdigest`` asks for too."""
    count = -(-len(data) // chunk_size)
    digest = OrderedDigest(count)

    def fetch(index: int) -> bytearray:
        chunk = bytearray(data[index * chunk_size : (index + 1) * chunk_size])
        digest.offer(index, chunk)
        return chunk

    for index in [i for i in order if i < count]:
        fetch(index)
    assert digest.hexdigest(fetch) == hashlib.sha256(data).hexdigest()


def _in_order_prefix(order: list[int]) -> int:
    """How many chunks an in-order hasher took from reads in ``order`` (0, 1, 2... as they came)."""
    taken = 0
    for index in order:
        if index == taken:
            taken += 1
    return taken
