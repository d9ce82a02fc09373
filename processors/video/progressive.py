"""Decoding an upload while it is still arriving: read front to back once.

A WebM/Matroska file, a fragmented or fast-start MP4 and an MPEG-TS stream can be demuxed from
their first bytes (``processors.video.sniff.streamable``), so frames and audio are extracted while
the phone is still sending chunks, and little is left to do when the last one lands. So can an MP4
with its index at the end once the chunks holding that index are stored: our clients send them
first (``processors.video.sniff.leading_chunks``). An MP4 sent in plain order waits for
``processors.video.seeking``'s seeking decode.

Front to back, seeking is not possible, so candidates are taken as the packets pass: a keyframe
whenever one comes at least ``CANDIDATE_SPACING_S`` after the last candidate, and where keyframes
are further apart (a browser's MediaRecorder writes one every few seconds), the frames since the
last keyframe are decoded up to the next candidate time. Only the packets of the current group of
pictures are held, compressed, until then. The candidates go to the same selection as the seeking
decode's, as they come, so memory does not grow with the video's length.
"""

from __future__ import annotations

from typing import BinaryIO

import av
import av.error

from processors.video.audio import Pcm
from processors.video.container import (
    TRUNCATION_SLACK,
    declared_duration,
    describe,
    open_container,
    timeline,
    too_long,
    video_stream,
)
from processors.video.frames import Timeline
from processors.video.media import DecodedMedia, DecodeError, DecodeLimits
from processors.video.select import CANDIDATE_SPACING_S
from processors.video.threads import Selection
from schemas.errors import ErrorCode


class TooFewKeyframes(Exception):
    """No frame of the video could be decoded front to back; the seeking decode must take over."""


class Follower:
    """Which video packets to decode, front to back, for candidates about ``CANDIDATE_SPACING_S`` apart.

    Packets are held from the last keyframe on and decoded only once one reaches the next candidate
    time: a keyframe alone when keyframes come often enough, otherwise the run of frames that leads
    from the keyframe to it.
    """

    def __init__(self, video: av.video.stream.VideoStream, line: Timeline, selection: Selection,
                 limits: DecodeLimits, frame_s: float) -> None:
        self.video = video
        self.line = line
        self.selection = selection
        self.limits = limits
        self.slack = frame_s / 2 + 1e-6
        self.target = float("-inf")
        self.held: list[av.Packet] = []
        self.last_pts: int | None = None

    def feed(self, packet: av.Packet, seconds: float) -> None:
        if packet.is_keyframe:
            self.held.clear()
        self.held.append(packet)
        if seconds >= self.target - self.slack:
            held, self.held = self.held, []
            for waiting in held:
                try:
                    self._take(self.video.decode(waiting))
                except av.error.FFmpegError:
                    continue

    def flush(self) -> None:
        try:
            self._take(self.video.decode(None))
        except av.error.FFmpegError:
            pass

    def _take(self, frames: list[av.VideoFrame]) -> None:
        for frame in frames:
            if frame.pts is None:
                continue
            if frame.width * frame.height > self.limits.max_pixels:
                raise DecodeError(ErrorCode.TOO_MANY_PIXELS, "a frame is larger than the pixel limit")
            seconds = self.line.seconds(frame.pts)
            if seconds >= self.target - self.slack and (self.last_pts is None or frame.pts > self.last_pts):
                self.selection.add(frame)
                self.last_pts, self.target = frame.pts, seconds + CANDIDATE_SPACING_S


def decode_arriving(source: BinaryIO, head: bytes, limits: DecodeLimits | None = None) -> DecodedMedia:
    """Decode a streamable ``source`` (read forward only) into selected frames and audio.

    Raises ``DecodeError`` for a video that cannot be decoded, ``TooFewKeyframes`` when no frame
    could be; errors from ``source`` itself (a chunk that never came) propagate.
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
    line = timeline(container, video)
    rate = video.average_rate or video.guessed_rate
    frame_s = float(1 / rate) if rate else 0.0
    end = 0.0
    with Selection(limits, line) as selection:
        follower = Follower(video, line, selection, limits, frame_s)
        try:
            for packet in container.demux([s for s in (video, audio) if s is not None]):
                if packet.stream.index == video.index:
                    if packet.pts is None:
                        follower.feed(packet, float("-inf"))
                        continue
                    seconds = line.seconds(packet.pts)
                    end = max(end, seconds + (float(packet.duration * line.base) if packet.duration else frame_s))
                    if end > limits.max_duration_s:
                        raise too_long(end, limits)
                    follower.feed(packet, seconds)
                elif audio is not None:
                    pcm.decode(audio, packet)
            follower.flush()
        except av.error.FFmpegError as exc:
            raise DecodeError(ErrorCode.DECODE_FAILED, f"the video could not be decoded: {exc}") from exc
        # Read front to back, a fragmented MP4 declares only its first fragment: what was read is the truth.
        duration = max(declared or 0.0, end)
        if not selection.count or not duration or duration <= 0:
            raise TooFewKeyframes("no frame was decoded")
        if declared is not None and declared - end > max(2.0, TRUNCATION_SLACK * declared):
            raise DecodeError(
                ErrorCode.TRUNCATED_VIDEO,
                f"the video declares {declared:.1f} s but its frames stop at {end:.1f} s:"
                " the file looks cut off or damaged",
            )
        media = describe(container, video, head, duration, selection)
    media.audio_wav = pcm.wav()
    return media
