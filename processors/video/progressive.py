"""Decoding an upload while it is still arriving: read front to back once.

A WebM/Matroska file, a fragmented or fast-start MP4 and an MPEG-TS stream can be demuxed from
their first bytes (``processors.video.sniff.streamable``), so frames and audio are extracted while the
phone is still sending chunks, and little is left to do when the last one lands. So can an MP4
with its index at the end once the chunks holding that index are stored: our clients send them
first (``processors.video.sniff.leading_chunks``). An MP4 sent in plain order waits for
``processors.video.seeking``'s seeking decode.

Front to back, seeking is not possible, so candidates are keyframes, one per slot of the timeline.
The slots start as long as the seeking decode's spacing when the container declares its duration,
and double in length whenever the pool fills (a fragmented MP4 or a live WebM declares none): the
pool ends up evenly spread over the whole video with at most ``2 * CANDIDATES_PER_SLOT * budget``
frames held. Only keyframe packets reach the video decoder. The same selection and JPEG finishing
as the seeking decode then pick the frames. When a video has too few keyframes for its frame
budget, ``TooFewKeyframes`` tells the caller to use the seeking decode, which walks to frames
between keyframes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import BinaryIO

import av
import av.error

from processors.video.audio import Pcm
from processors.video.container import (
    TRUNCATION_SLACK,
    declared_duration,
    open_container,
    selected_media,
    too_long,
    video_stream,
)
from processors.video.frames import Shot, shrink
from processors.video.media import DecodedMedia, DecodeError, DecodeLimits, frame_budget
from processors.video.seeking import CANDIDATES_PER_SLOT
from schemas.errors import ErrorCode

FIRST_SPACING_S = 0.25
"""Closest two candidates may be before the pool first fills: finer than any phone's keyframe interval."""


class TooFewKeyframes(Exception):
    """The video's keyframes are too rare for its frame budget; the seeking decode must take over."""


@dataclass
class CandidatePool:
    """At most one keyframe candidate per ``spacing``-long slot of the timeline, the first in it.

    When the pool outgrows its capacity the slots double in length and each keeps its earliest
    candidate: the pool stays evenly spread over everything read so far, whatever the length.
    """

    spacing: float = FIRST_SPACING_S
    shots: list[Shot] = field(default_factory=list)

    def wants(self, seconds: float) -> bool:
        return not self.shots or self._slot(seconds) > self._slot(self.shots[-1].timestamp)

    def add(self, shot: Shot, capacity: int) -> None:
        if not self.wants(shot.timestamp):
            return
        self.shots.append(shot)
        while len(self.shots) > capacity:
            self.spacing *= 2
            kept: list[Shot] = []
            for candidate in self.shots:
                if not kept or self._slot(candidate.timestamp) > self._slot(kept[-1].timestamp):
                    kept.append(candidate)
            self.shots = kept

    def _slot(self, seconds: float) -> int:
        return math.floor(seconds / self.spacing)


def _first_spacing(declared: float | None, limits: DecodeLimits) -> float:
    """Slots as long as the seeking decode's spacing when the container declares its duration (an MP4
    whose index came first, most Matroska files): then only the keyframes it would have picked are
    decoded, not every one until the pool fills."""
    if not declared:
        return FIRST_SPACING_S
    budget = frame_budget(declared, limits.frame_count, limits.max_frame_count)
    return max(FIRST_SPACING_S, declared / (CANDIDATES_PER_SLOT * budget))


def decode_arriving(source: BinaryIO, head: bytes, limits: DecodeLimits | None = None) -> DecodedMedia:
    """Decode a streamable ``source`` (read forward only) into selected frames and audio.

    Raises ``DecodeError`` for a video that cannot be decoded, ``TooFewKeyframes`` when the seeking
    decode would do better; errors from ``source`` itself (a chunk that never came) propagate.
    """
    limits = limits or DecodeLimits()
    pcm = Pcm(limits.audio_rate)
    try:
        with open_container(source, head, limits) as container:
            return _decode_forward(container, head, limits, pcm)
    finally:
        pcm.wipe()


def _decode_forward(container: av.container.InputContainer, head: bytes, limits: DecodeLimits, pcm: Pcm) -> DecodedMedia:
    """``decode_arriving`` once the container is open; ``pcm`` collects the audio (wiped by the caller)."""
    video = video_stream(container, limits)
    audio = next((s for s in container.streams.audio if s.codec_context is not None), None)
    declared = declared_duration(container, video)
    if declared is not None and declared > limits.max_duration_s:
        raise too_long(declared, limits)
    base, start = video.time_base, video.start_time or 0
    pool = CandidatePool(_first_spacing(declared, limits))
    end = 0.0
    rate = video.average_rate or video.guessed_rate
    frame_s = float(1 / rate) if rate else 0.0

    def take(frames: list[av.VideoFrame]) -> None:
        for frame in frames:
            if frame.pts is None:
                continue
            if frame.width * frame.height > limits.max_pixels:
                raise DecodeError(ErrorCode.TOO_MANY_PIXELS, "a frame is larger than the pixel limit")
            capacity = 2 * CANDIDATES_PER_SLOT * frame_budget(end, limits.frame_count, limits.max_frame_count)
            pool.add(shrink(frame, start, base, limits), capacity)

    try:
        for packet in container.demux([s for s in (video, audio) if s is not None]):
            if packet.stream.index == video.index:
                if packet.pts is None:
                    continue
                seconds = float((packet.pts - start) * base)
                end = max(end, seconds + (float(packet.duration * base) if packet.duration else frame_s))
                if end > limits.max_duration_s:
                    raise too_long(end, limits)
                if packet.is_keyframe and pool.wants(seconds):
                    try:
                        take(video.decode(packet))
                    except av.error.FFmpegError:
                        continue
            elif audio is not None:
                pcm.decode(audio, packet)
        take(video.decode(None))
    except av.error.FFmpegError as exc:
        raise DecodeError(ErrorCode.DECODE_FAILED, f"the video could not be decoded: {exc}") from exc
    # Read front to back, a fragmented MP4 declares only its first fragment: what was read is the truth.
    duration = max(declared or 0.0, end)
    if not pool.shots or not duration or duration <= 0:
        raise TooFewKeyframes("no keyframe was decoded")
    if declared is not None and declared - end > max(2.0, TRUNCATION_SLACK * declared):
        raise DecodeError(
            ErrorCode.TRUNCATED_VIDEO,
            f"the video declares {declared:.1f} s but its frames stop at {end:.1f} s:"
            " the file looks cut off or damaged",
        )
    budget = frame_budget(duration, limits.frame_count, limits.max_frame_count)
    if len(pool.shots) < min(budget, max(1, math.floor(duration / max(frame_s, 1e-3)))):
        raise TooFewKeyframes(f"{len(pool.shots)} keyframes for a budget of {budget} frames")
    media = selected_media(pool.shots, budget, container, video, head, duration, limits)
    media.audio_wav = pcm.wav()
    return media
