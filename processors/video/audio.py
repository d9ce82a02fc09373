"""The audio track as 16 kHz mono s16 WAV, decoded in process."""

from __future__ import annotations

import io
import threading
import wave
from typing import BinaryIO

import av
import av.error
import av.filter

from processors.video.container import discard_all_but, open_container
from processors.video.media import DecodeError, DecodeLimits
from streams.crypto import wipe


class Pcm:
    """Decoded audio resampled to mono s16 at ``rate``, collected as WAV.

    The same conversion as ``av.AudioResampler`` (abuffer, aformat, abuffersink: the same samples),
    but frames are pushed into the graph one by one and pulled out in batches, a second at a time.
    The resampler pulls after every frame and each empty pull raises an exception: that was a third
    of the audio's cost.
    """

    BATCH = 32
    """Frames pushed between two pulls."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._pcm = bytearray()
        self._graph: av.filter.Graph | None = None
        self._source: av.filter.context.FilterContext | None = None
        self._sink: av.filter.context.FilterContext | None = None
        self._pending = 0

    def decode(self, audio: av.audio.stream.AudioStream, packet: av.Packet) -> None:
        """Decode one audio packet; a damaged packet, or a frame whose format changed midway, is skipped."""
        try:
            frames = audio.decode(packet)
        except (av.error.FFmpegError, ValueError):
            return
        for frame in frames:
            try:
                (self._source or self._configure(frame)).push(frame)
            except av.error.FFmpegError:
                continue
            self._pending += 1
            if self._pending >= self.BATCH:
                self._pull()

    def wav(self) -> bytes | None:
        """Flush the resampler; the WAV of everything decoded, or None when nothing was."""
        if self._source is not None:
            self._source.push(None)
            self._pull()
            self._graph = self._source = self._sink = None
        if not self._pcm:
            return None
        wav = _wav(self._pcm, self.rate)
        self.wipe()
        return wav

    def wipe(self) -> None:
        """Zero and drop the samples collected so far, so no audio lingers in freed memory."""
        wipe(self._pcm)
        self._pcm.clear()

    def _configure(self, frame: av.AudioFrame) -> av.filter.context.FilterContext:
        """The graph, shaped after the first frame as ``av.AudioResampler`` does."""
        graph = av.filter.Graph()
        timing = {"time_base": str(frame.time_base)} if frame.time_base is not None else {}
        source = graph.add(
            "abuffer",
            sample_rate=str(frame.sample_rate),
            sample_fmt=frame.format.name,
            channel_layout=frame.layout.name,
            **timing,
        )
        convert = graph.add("aformat", sample_rates=str(self.rate), sample_fmts="s16", channel_layouts="mono")
        sink = graph.add("abuffersink")
        source.link_to(convert)
        convert.link_to(sink)
        graph.configure()
        graph.set_audio_frame_size(self.rate)
        self._graph, self._source, self._sink = graph, source, sink
        return source

    def _pull(self) -> None:
        """Collect what the graph has ready; it answers EAGAIN when it needs more, EOF once flushed."""
        self._pending = 0
        while self._sink is not None:
            try:
                mono = self._sink.pull()
            except (EOFError, av.error.FFmpegError):
                return
            self._pcm += _samples(mono)


def _samples(mono: av.AudioFrame) -> memoryview:
    """The frame's s16 mono samples, without the plane's padding and without a copy."""
    return memoryview(mono.planes[0])[: mono.samples * 2]


def _wav(pcm: bytearray, rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    return out.getvalue()


def audio_only(source: BinaryIO, head: bytes, limits: DecodeLimits, stop: threading.Event) -> bytes | None:
    """The first decodable audio track as WAV, from a container of its own; None when there is none.

    The video packets are discarded by the demuxer (an MP4's are then not even read). A file that
    does not open here fails the video side too, which reports why.
    """
    try:
        container = open_container(source, head, limits)
    except DecodeError:
        return None
    with container:
        audio = next((s for s in container.streams.audio if s.codec_context is not None), None)
        if audio is None:
            return None
        discard_all_but(container, audio)
        pcm = Pcm(limits.audio_rate)
        try:
            for packet in container.demux(audio):
                if stop.is_set():
                    return None
                pcm.decode(audio, packet)
        except av.error.FFmpegError:
            pass
        finally:
            if stop.is_set():
                pcm.wipe()
        return pcm.wav()
