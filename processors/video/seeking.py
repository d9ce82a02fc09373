"""The seeking decode: an upload already stored, read at random through a seekable source.

Why it looks like this:
- The source is a seekable file-like (``BytesIO`` or ``ChunkReader``): MP4/MOV written by phones keep
  their index (moov atom) at the end, which a pipe cannot reach but a seekable reader can.
- Candidates come from keyframe seeks about ``CANDIDATE_SPACING_S`` apart over the whole duration
  (decoding forward between keyframes that are further apart), not from decoding every frame;
  ``processors.video.select`` keeps those that show new view, and only those are JPEG-encoded.
- Every failure is a ``DecodeError`` with a stable code (``schemas.errors.ErrorCode``), and every
  loop is bounded by the input size, so a hostile file cannot hang a worker.
- Nothing is shared between calls: each call opens its own containers, so it is safe from a thread
  pool. Decoded frames are dropped as soon as they are reduced to a candidate.
- The audio runs beside the video through a second container (``processors.video.parallel``).
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Iterator
from typing import BinaryIO

import av
import av.error

from processors.video.audio import audio_only
from processors.video.container import (
    TRUNCATION_SLACK,
    declared_duration,
    describe,
    discard_all_but,
    measure,
    open_container,
    timeline,
    too_long,
    video_stream,
)
from processors.video.media import DecodedMedia, DecodeError, DecodeLimits
from processors.video.parallel import Selection, SharedWindow, audio_beside
from processors.video.select import CANDIDATE_SPACING_S
from processors.video.sniff import looks_like_container, peek
from schemas.errors import ErrorCode

SEEK_ATTEMPTS = 6
"""Seeks tried per target when the demuxer lands late: stepping back 0, 1, 2, 4, 8, 16 s."""

MAX_FRAMES_PER_TARGET = 900
"""Most frames decoded while walking from a keyframe to one target (30 s at 30 fps)."""


def decode_media(source: BinaryIO, limits: DecodeLimits = DecodeLimits()) -> DecodedMedia:
    """Decode ``source`` (seekable, binary) into selected frames and audio; raises only ``DecodeError``."""
    try:
        head = peek(source)
        return _decode(source, head, limits)
    except DecodeError:
        raise
    except av.error.FFmpegError as exc:
        raise DecodeError(ErrorCode.DECODE_FAILED, f"the video could not be decoded: {exc}") from exc
    except Exception as exc:
        raise DecodeError(ErrorCode.DECODE_FAILED, f"the video could not be read: {type(exc).__name__}: {exc}") from exc


def _decode(source: BinaryIO, head: bytes, limits: DecodeLimits) -> DecodedMedia:
    """The video on this thread, the audio on another (``audio_beside``), each through its own container;
    one after the other when ``limits.threads`` is 1."""
    lock = threading.Lock()
    if limits.threads <= 1:
        with open_container(SharedWindow(source, lock), head, limits) as container:
            media = _decode_video(container, head, limits)
        media.audio_wav = audio_only(SharedWindow(source, lock), head, limits, threading.Event())
        return media
    audio = audio_beside(lambda stop: audio_only(SharedWindow(source, lock), head, limits, stop))
    try:
        with open_container(SharedWindow(source, lock), head, limits) as container:
            media = _decode_video(container, head, limits)
        media.audio_wav = audio.result()
        return media
    finally:
        audio.cancel()


def _decode_video(container: av.container.InputContainer, head: bytes, limits: DecodeLimits) -> DecodedMedia:
    """Everything but the audio: checks, duration, candidates, selection, JPEG frames."""
    video = video_stream(container, limits)
    declared = declared_duration(container, video)
    if declared is not None and declared > limits.max_duration_s:
        raise too_long(declared, limits)
    discard_all_but(container, video)
    duration = declared if declared is not None else measure(container, video, limits)
    if not duration or duration <= 0:
        raise DecodeError(ErrorCode.DECODE_FAILED, "the video stream holds no decodable frames")
    with Selection(limits, timeline(container, video)) as selection:
        video_end = _collect(container, video, duration, CANDIDATE_SPACING_S, selection, at_start=declared is not None)
        if not selection.count:
            if looks_like_container(head):
                raise DecodeError(
                    ErrorCode.TRUNCATED_VIDEO, "no frame could be decoded: the file looks cut off or damaged"
                )
            raise DecodeError(ErrorCode.DECODE_FAILED, "no frame of the video could be decoded")
        if declared is not None and declared - video_end > max(2.0, TRUNCATION_SLACK * declared):
            raise DecodeError(
                ErrorCode.TRUNCATED_VIDEO,
                f"the video declares {declared:.1f} s but its frames stop at {video_end:.1f} s:"
                " the file looks cut off or damaged",
            )
        return describe(container, video, head, duration, selection)


def _collect(
    container: av.container.InputContainer,
    video: av.video.stream.VideoStream,
    duration: float,
    spacing: float,
    selection: Selection,
    at_start: bool,
) -> float:
    """Candidates ``spacing`` apart (a frame apart at least), handed to ``selection``; returns how far into the
    video frames were found.

    For each target time: seek to the keyframe at or before it and take the first frame if it is
    within half a spacing (and half a frame, for rounded timestamps) of the target; otherwise
    (keyframes rarer than targets) decode forward to it. When keyframes proved rarer than the gap to the next target, keep decoding forward instead
    of seeking back to a keyframe already passed. A frame is never taken twice (strictly increasing
    pts), the last frames before EOF stand in for targets the video does not reach if a spacing
    after the last candidate (as the front-to-back decode would take them), and frames
    stamped outside the video's duration (damaged timestamps) are passed over. Each frame found is
    judged on a worker thread while the next one is sought and decoded. ``at_start``: nothing was read
    yet, so the first target is decoded from the start (an MPEG-TS seek to 0 lands on the second keyframe).
    """
    base = video.time_base
    start = video.start_time or 0
    rate = video.average_rate or video.guessed_rate
    frame_s = float(1 / rate) if rate else 0.0
    limits = selection.limits
    spacing = max(spacing, frame_s)
    count = max(1, math.ceil(duration / spacing - 1e-6))
    frames: Iterator[av.VideoFrame] | None = _frames(container, video) if at_start else None
    position: float | None = None
    reach = 0.0
    last_pts: int | None = None
    last_t = -math.inf
    video_end = 0.0
    for index in range(count):
        target, earliest = (index + 0.5) * spacing, index * spacing - frame_s / 2 - 1e-6
        landed = True
        found: av.VideoFrame | None = None
        behind: av.VideoFrame | None = None
        ended = True
        try:
            fresh = at_start and index == 0
            if not fresh and (frames is None or position is None or not position < target <= position + reach):
                frames = _land(container, video, target, spacing / 2, frames)
                position, landed = None, False
            for decoded, frame in enumerate(frames, start=1):
                t = float((frame.pts - start) * base) if frame.pts is not None else math.nan
                if -1.0 <= t <= duration + 1.0:
                    if not landed:
                        landed, reach = True, max(reach, target - t)
                    position, video_end = t, max(video_end, t + frame_s)
                    if frame.width * frame.height > limits.max_pixels:
                        raise DecodeError(ErrorCode.TOO_MANY_PIXELS, "a frame is larger than the pixel limit")
                    if last_pts is None or frame.pts > last_pts:
                        if t >= earliest:
                            found, ended = frame, False
                            break
                        if t >= last_t + spacing - frame_s / 2 - 1e-6:
                            behind = frame
                if decoded >= MAX_FRAMES_PER_TARGET:
                    ended = False
                    break
        except av.error.FFmpegError:
            frames, ended = None, False
        found = found or behind
        if found is not None:
            selection.add(found)
            last_pts, last_t = found.pts, float((found.pts - start) * base)
        if ended:
            break
    return video_end


def _land(
    container: av.container.InputContainer,
    video: av.video.stream.VideoStream,
    seconds: float,
    tolerance: float,
    current: Iterator[av.VideoFrame] | None,
) -> Iterator[av.VideoFrame]:
    """Frames from the last keyframe at or before ``seconds``.

    Some demuxers (MPEG-TS: a byte-position search) land on the keyframe after the requested time,
    or past the last one and so on EOF. Then step back by 1, 2, 4... s until the first frame is not
    late. An input that cannot seek at all just goes on from where it is.
    """
    start = video.start_time or 0
    backoff = 0.0
    first: av.VideoFrame | None = None
    frames: Iterator[av.VideoFrame] = iter(())
    for _ in range(SEEK_ATTEMPTS):
        aim = max(0.0, seconds - backoff)
        if not _seek(container, video, aim):
            return current if current is not None else _frames(container, video)
        frames = _frames(container, video)
        first = next(frames, None)
        landed = None if first is None or first.pts is None else float((first.pts - start) * video.time_base)
        late = first is None or (landed is not None and landed > seconds + tolerance)
        if not late or aim == 0.0:
            break
        backoff = max(1.0, 2 * backoff)
    return itertools.chain([first], frames) if first is not None else frames


def _seek(container: av.container.InputContainer, video: av.video.stream.VideoStream, seconds: float) -> bool:
    """Seek to the keyframe at or before ``seconds``; False if the input cannot seek.

    The start is aimed at one second early: MPEG-TS seeks by decode timestamp, and the first
    keyframe's is earlier than its presentation timestamp, so aiming exactly at it lands after it.
    """
    start = video.start_time or 0
    aims = [start + int(seconds / video.time_base)] if seconds > 0 else [start - int(1 / video.time_base), start]
    for pts in aims:
        try:
            container.seek(pts, stream=video, backward=True, any_frame=False)
            return True
        except av.error.FFmpegError:
            continue
    return False


def _frames(container: av.container.InputContainer, video: av.video.stream.VideoStream) -> Iterator[av.VideoFrame]:
    """Decoded video frames from the current position; a damaged packet is skipped, as players do."""
    for packet in container.demux(video):
        try:
            decoded = video.decode(packet)
        except av.error.FFmpegError:
            continue
        yield from decoded
