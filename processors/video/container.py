"""Opening a container with PyAV and reading what it declares: the video stream, its duration, its name.

Every check that refuses a file before decoding lives here, so each refusal names its real cause.
"""

from __future__ import annotations

from fractions import Fraction
from typing import BinaryIO

import av
import av.error
import av.stream

from processors.video.frames import Timeline, shown_size
from processors.video.media import DecodedMedia, DecodeError, DecodeLimits
from processors.video.sniff import looks_like_container
from processors.video.threads import Selection
from schemas.errors import ErrorCode

ALLOWED_FORMATS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,mpegts,avi,flv,ogg"
"""Demuxers FFmpeg may pick. Image, playlist and concat demuxers stay out: an upload is a video file,
never an HLS playlist or concat list that makes FFmpeg open other URLs or files."""

PROBE_MAX_PIXELS = 8192 * 8192
"""Picture size FFmpeg may allocate while probing, before ``max_pixels`` can be checked."""

TRUNCATION_SLACK = 0.15
"""Video ending this share of the declared duration early (and at least 2 s) means a cut-off file."""


def open_container(source: BinaryIO, head: bytes, limits: DecodeLimits) -> av.container.InputContainer:
    options = {"format_whitelist": ALLOWED_FORMATS, "max_pixels": str(max(limits.max_pixels, PROBE_MAX_PIXELS))}
    try:
        return av.open(source, mode="r", options=options, metadata_errors="replace")
    except av.error.FFmpegError as exc:
        if looks_like_container(head):
            raise DecodeError(
                ErrorCode.TRUNCATED_VIDEO, "the file starts like a video but is incomplete or damaged (index missing?)"
            ) from exc
        raise DecodeError(ErrorCode.NOT_A_VIDEO, "the file is not a video in a supported container") from exc


def video_stream(container: av.container.InputContainer, limits: DecodeLimits) -> av.video.stream.VideoStream:
    """The first real video stream (cover art is not video), checked against the pixel limit before decoding."""
    streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        raise DecodeError(ErrorCode.NO_VIDEO_STREAM, "the file has no video stream")
    video = streams[0]
    if video.codec_context is None:
        raise DecodeError(ErrorCode.DECODE_FAILED, "the video codec is not supported")
    width, height = video.codec_context.width, video.codec_context.height
    if width * height > limits.max_pixels:
        raise DecodeError(
            ErrorCode.TOO_MANY_PIXELS,
            f"the video is {width}x{height}; the limit is {limits.max_pixels} pixels per frame",
        )
    if width <= 0 or height <= 0:
        raise DecodeError(ErrorCode.DECODE_FAILED, "the video stream declares no usable picture size")
    video.codec_context.options = {"max_pixels": str(limits.max_pixels)}
    if limits.threads <= 1:
        video.codec_context.thread_count = 1
    return video


def declared_duration(container: av.container.InputContainer, video: av.video.stream.VideoStream) -> float | None:
    """The video stream's duration, else the container's; None when neither is known (live WebM, some TS)."""
    if video.duration and video.time_base and video.duration > 0:
        return float(video.duration * video.time_base)
    if container.duration and container.duration > 0:
        return container.duration / av.time_base
    return None


def too_long(seconds: float, limits: DecodeLimits) -> DecodeError:
    return DecodeError(
        ErrorCode.TOO_LONG, f"the video runs {seconds:.1f} s or more, over the {limits.max_duration_s:g} s limit"
    )


def measure(
    container: av.container.InputContainer, video: av.video.stream.VideoStream, limits: DecodeLimits
) -> float | None:
    """The video's length from its last packet, for files that declare none (live WebM, some TS).

    Exact and costs no decoding; for Matroska without cues it also lets the demuxer index the
    keyframes that the seeks which follow need. Stops as soon as the length passes the limit.
    """
    start = video.start_time or 0
    end: float | None = None
    try:
        for packet in container.demux(video):
            if packet.pts is not None:
                end = max(end or 0.0, float((packet.pts + packet.duration - start) * video.time_base))
                if end > limits.max_duration_s:
                    raise too_long(end, limits)
    except av.error.FFmpegError:
        pass
    return end


def discard_all_but(container: av.container.InputContainer, keep: av.stream.Stream) -> None:
    """Have the demuxer drop every other stream's packets instead of reading them for nothing."""
    for stream in container.streams:
        if stream.index != keep.index:
            stream.discard = av.stream.Discard.all


def container_name(container: av.container.InputContainer, head: bytes) -> str:
    """A short name: the demuxer's family split into mp4/mov (major brand) and webm/matroska (EBML DocType)."""
    name = container.format.name
    if name.startswith("mov,"):
        return "mov" if container.metadata.get("major_brand", "").strip() == "qt" else "mp4"
    if name.startswith("matroska"):
        return "webm" if b"\x42\x82\x84webm" in head[:64] else "matroska"
    return name.split(",")[0]


def timeline(container: av.container.InputContainer, video: av.video.stream.VideoStream) -> Timeline:
    """Frame times on the container's timeline, the one the audio is on (a video track may start late),
    and the pixel aspect ratio an anamorphic recording declares."""
    base = video.time_base or Fraction(1, 90_000)
    if container.start_time is not None:
        origin = round(Fraction(container.start_time, av.time_base) / base)
    else:
        origin = video.start_time or 0
    aspect = video.sample_aspect_ratio or video.codec_context.sample_aspect_ratio
    return Timeline(origin, base, Fraction(aspect) if aspect and aspect > 0 else Fraction(1))


def describe(container: av.container.InputContainer, video: av.video.stream.VideoStream, head: bytes,
             duration: float, selection: Selection) -> DecodedMedia:
    """The selected frames, finished, with what the video is; the audio is the caller's to add."""
    frames = selection.frames()
    turn = (-selection.rotation) % 360
    shown = shown_size(video.codec_context.width, video.codec_context.height, selection.timeline.aspect)
    width, height = round(shown[0]), round(shown[1])
    if turn in (90, 270):
        width, height = height, width
    return DecodedMedia(
        duration=duration,
        width=width,
        height=height,
        rotation=turn,
        video_codec=video.codec.canonical_name,
        container=container_name(container, head),
        frames=frames,
        audio_wav=None,
    )
