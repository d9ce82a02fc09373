"""What an upload's first bytes say: can it be read front to back, and which chunks hold an MP4's index."""

from __future__ import annotations

from processors.video.media_reader import ChunkReader
from processors.video.progressive import decode_arriving
from processors.video.sniff import HEAD_BYTES, index_offset, leading_chunks, streamable, top_level_boxes
from tests.support.videos import make_video

CHUNK = 64 * 1024


def box(kind: bytes, size: int, *, large: bool = False) -> bytes:
    if large:
        return (1).to_bytes(4, "big") + kind + size.to_bytes(8, "big")
    return size.to_bytes(4, "big") + kind


def test_the_top_level_boxes_of_an_mp4_are_walked_from_their_headers_alone() -> None:
    head = box(b"ftyp", 16) + b"isom\0\0\0\0" + box(b"mdat", 5_000_000_000, large=True)
    assert list(top_level_boxes(head)) == [(b"ftyp", 0, 16), (b"mdat", 16, 5_000_000_000)]
    assert list(top_level_boxes(box(b"ftyp", 4))) == []
    assert list(top_level_boxes(box(b"mdat", 0))) == [(b"mdat", 0, 0)]


def test_an_mp4_with_its_index_at_the_end_is_not_streamable_but_says_where_the_index_starts() -> None:
    video = make_video(duration=2.0)
    assert not streamable(video[:CHUNK])
    offset = index_offset(video[:HEAD_BYTES])
    assert offset is not None and video[offset + 4 : offset + 8] == b"moov"


def test_a_fast_start_mp4_is_streamable_and_has_no_index_at_the_end() -> None:
    video = make_video(duration=2.0, faststart=True)
    assert streamable(video[:CHUNK])
    assert index_offset(video[:HEAD_BYTES]) is None
    assert leading_chunks(video[:HEAD_BYTES], len(video), 1024) == []


def test_anything_else_is_neither() -> None:
    for head in (b"", b"not a video at all" * 100, make_video(duration=1.0, container="mpegts")[:HEAD_BYTES]):
        assert index_offset(head) is None
    assert not streamable(b"") and not streamable(b"not a video at all" * 100)
    assert index_offset(box(b"mdat", 0)) is None, "an mdat running to the end of the file has no index after it"


def test_the_leading_chunks_are_those_from_the_index_to_the_end() -> None:
    head = box(b"ftyp", 8) + box(b"mdat", 2_500_000 - 8)
    assert leading_chunks(head, 2_600_000, 1_000_000) == [2]
    assert leading_chunks(head, 4_100_000, 1_000_000) == [2, 3, 4]
    assert leading_chunks(head, 2_600_000, 4_000_000) == [], "an index in the first chunk arrives with it anyway"
    assert leading_chunks(head, 2_500_000, 1_000_000) == [], "no byte after the media: nothing to send first"


def test_with_its_index_stored_first_an_mp4_is_decoded_front_to_back_through_a_random_access_reader() -> None:
    video = make_video(duration=6.0, width=640, height=360, noise=3, gop=12)
    lead = leading_chunks(video[:HEAD_BYTES], len(video), CHUNK)
    assert lead
    order: list[int] = []

    def fetch(index: int) -> bytes:
        order.append(index)
        return video[index * CHUNK : (index + 1) * CHUNK]

    media = decode_arriving(ChunkReader(len(video), CHUNK, fetch, cache_chunks=2), video[:512])
    assert len(media.frames) >= 2 and media.audio_wav is not None
    assert abs(media.duration - 6.0) < 0.2
    media_chunks = [i for i in order if i not in lead]
    assert media_chunks == sorted(media_chunks), "after the index, the media is read front to back"
    assert media.frames[-1].timestamp > 4.0
