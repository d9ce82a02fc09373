"""The benchmark's videos, all in memory: the reference phone clip and stream copies of it.

Stream copies (no re-encoding) keep every derived clip the same picture and bitrate as the
reference: a fragmented MP4 of it, its first seconds, or its first seconds looped many times to
make a large file quickly. Looping is honest about what it is: a long video made of one
stretch repeated, with every packet re-timed so the result plays (and seeks) as one clip.
"""

from __future__ import annotations

import functools
import io

import av

from tests.support.videos import make_phone_clip, make_video


@functools.lru_cache(maxsize=1)
def reference() -> bytes:
    """60 s, 1920x1080, 30 fps, H.264 at 12 Mb/s + AAC, 1 s GOP, moov at the end (~27-45 s to encode)."""
    return make_phone_clip(duration=60.0, width=1920, height=1080, bitrate=12_000_000)


def small_clip(index: int, duration: float = 5.0) -> bytes:
    """A 640x360 H.264 + AAC clip whose picture depends on ``index`` (so sessions differ)."""
    return make_video(duration=duration, width=640, height=360, fps=30, noise=3, pattern=index.to_bytes(4, "big"))


def remux(data: bytes, *, fmt: str = "mp4", options: dict[str, str] | None = None, seconds: float | None = None,
          loops: int = 1) -> bytes:
    """Stream-copy ``data`` into a new container.

    ``seconds`` keeps the packets before that time (cut before the next keyframe at or after it, so
    the clip ends on a whole GOP); ``loops`` repeats what is kept, each copy shifted by the kept
    duration. ``options`` are muxer options (``movflags`` for fragmented MP4).
    """
    source = av.open(io.BytesIO(data))
    streams = [s for s in source.streams if s.type in ("video", "audio")]
    video = next(s for s in streams if s.type == "video")
    packets = []
    cut = None
    for packet in source.demux(streams):
        if packet.dts is None:
            continue
        t = float(packet.pts * packet.time_base) if packet.pts is not None else 0.0
        if seconds is not None and packet.stream is video and packet.is_keyframe and t >= seconds:
            cut = t
        if cut is not None and t >= cut:
            continue
        packets.append((packet.stream.index, packet.pts, packet.dts, packet.duration, packet.is_keyframe, bytes(packet)))
    spans = {s.index: max(p[1] + (p[3] or 0) for p in packets if p[0] == s.index) - min(p[1] for p in packets if p[0] == s.index)
             for s in streams}
    out = io.BytesIO()
    with av.open(out, mode="w", format=fmt, options=options or {}) as muxer:
        targets = {s.index: muxer.add_stream_from_template(s) for s in streams}
        for loop in range(loops):
            for index, pts, dts, duration, key, payload in packets:
                packet = av.Packet(payload)
                packet.stream = targets[index]
                packet.time_base = source.streams[index].time_base
                packet.pts, packet.dts = pts + loop * spans[index], dts + loop * spans[index]
                packet.duration = duration
                packet.is_keyframe = key
                muxer.mux(packet)
    source.close()
    return out.getvalue()


def fragmented(data: bytes) -> bytes:
    """The same clip as fragmented MP4 (moov first, then one moof+mdat per keyframe): streamable."""
    return remux(data, options={"movflags": "frag_keyframe+empty_moov+default_base_moof"})


def transport(data: bytes) -> bytes:
    """The same clip as MPEG-TS: streamable, as broadcast and some Android apps write it."""
    return remux(data, fmt="mpegts")


def matroska(data: bytes) -> bytes:
    """The same clip as Matroska, the container of WebM (same demuxer): streamable, no index needed.

    Stream-copied, so it keeps H.264 + AAC: a WebM proper (VP9 + Opus) would mean re-encoding 60 s of
    1080p, minutes on this machine; what the progressive decode depends on is the container.
    """
    return remux(data, fmt="matroska")


def sized(data: bytes, at_least: int) -> tuple[bytes, float]:
    """The reference's first whole seconds making at least ``at_least`` bytes, and how many seconds."""
    per_second = len(data) / 60.0
    seconds = float(int(at_least / per_second) + 1)
    while True:
        clip = remux(data, seconds=seconds)
        if len(clip) >= at_least:
            return clip, seconds
        seconds += 1.0
