"""Video bytes in, a few upright JPEG frames and 16 kHz mono WAV audio out; PyAV in process, nothing on disk.

Why it looks like this:
- The source is a seekable file-like (``BytesIO`` or ``ChunkReader``): MP4/MOV written by phones keep
  their index (moov atom) at the end, which a pipe cannot reach but a seekable reader can.
- Frames come from keyframe seeks spread over the whole duration, not from decoding every frame:
  about three candidates per frame of budget, reduced by ``processors.select`` to sharp, distinct,
  well spread frames, and only the chosen ones are JPEG-encoded.
- Every failure is a ``DecodeError`` with a stable code (``schemas.errors.ErrorCode``), and every
  loop is bounded by the input size, so a hostile file cannot hang a worker.
- Nothing is shared between calls: each call opens its own containers, so it is safe from a thread
  pool. Decoded frames are dropped as soon as they are reduced to a candidate.
- Within a call, the work is spread over two cores: the audio is decoded on a second thread through
  a second container over the same source (``_Window`` serialises their reads), keyframes are shrunk
  on a worker while the next one is decoded, and the chosen frames are JPEG-encoded two at a time.
  libav and PIL release the GIL for all the heavy work, so the threads really run side by side.
"""

from __future__ import annotations

import io
import itertools
import math
import threading
import wave
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO, TypeVar

import av
import av.error
import av.filter
import av.stream
import numpy as np
from PIL import Image

from processors.media_reader import seek_position
from processors.select import Candidate, select_frames, sharpness
from schemas.errors import ErrorCode
from streams.crypto import wipe

ALLOWED_FORMATS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,mpegts,avi,flv,ogg"
"""Demuxers FFmpeg may pick. Image, playlist and concat demuxers stay out: an upload is a video file,
never an HLS playlist or concat list that makes FFmpeg open other URLs or files."""

PROBE_MAX_PIXELS = 8192 * 8192
"""Picture size FFmpeg may allocate while probing, before ``max_pixels`` can be checked."""

GREY_WIDTH = 128
"""Width of the grey picture frame selection works on: enough for blur to show, cheap to compare."""

CANDIDATES_PER_SLOT = 3
"""Candidates decoded per frame of budget; selection needs choice, keyframe seeks keep it cheap."""

SEEK_ATTEMPTS = 6
"""Seeks tried per target when the demuxer lands late: stepping back 0, 1, 2, 4, 8, 16 s."""

MAX_FRAMES_PER_TARGET = 900
"""Most frames decoded while walking from a keyframe to one target (30 s at 30 fps)."""

TRUNCATION_SLACK = 0.15
"""Video ending this share of the declared duration early (and at least 2 s) means a cut-off file."""

T = TypeVar("T")

FINISH_THREADS = 2
"""Threads that JPEG-encode the chosen frames."""

_ISO_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"moof", b"styp", b"sidx"}
_TRANSPOSE = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}


class DecodeError(Exception):
    """A video that cannot be turned into frames, with a code clients can act on."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class DecodeLimits:
    """What a decode may cost; the defaults suit phone recordings of a home."""

    frame_count: int = 8
    max_long_side: int = 1024
    jpeg_quality: int = 85
    max_pixels: int = 8_847_360 * 2
    max_duration_s: float = 3600.0
    audio_rate: int = 16_000
    max_frame_count: int = 32
    threads: int = 2
    """Threads one decode may use. 1 holds it to one core (the audio after the video, frames shrunk and
    encoded one at a time, libav single-threaded): a worker that decodes many sessions side by side
    gets more from one core per decode than from two decodes fighting over both."""


@dataclass(frozen=True)
class Frame:
    """One selected frame, upright, as JPEG; ``timestamp`` is seconds from the start of the video."""

    timestamp: float
    jpeg: bytes
    width: int
    height: int
    sharpness: float


@dataclass
class DecodedMedia:
    """What the analyzer needs from a video.

    ``width``/``height`` are the upright (displayed) size; ``rotation`` is the clockwise turn, in
    degrees, that was applied to make frames upright. ``audio_wav`` is mono s16le WAV at
    ``DecodeLimits.audio_rate``, or None when the file has no (decodable) audio.
    """

    duration: float
    width: int
    height: int
    rotation: int
    video_codec: str
    container: str
    frames: list[Frame]
    audio_wav: bytes | None


@dataclass
class _Shot:
    """A candidate frame: yuv420p planes at output size (not yet rotated) plus its selection data."""

    timestamp: float
    pts: int
    planes: np.ndarray
    colorspace: int
    color_range: int
    grey: np.ndarray
    rotation: int


def frame_budget(duration: float, base: int, maximum: int = 32) -> int:
    """Frames to keep for a video: ``base`` up to 2 min, then one more per 30 s, at most ``maximum``.

    A ten-minute walk-through covers more rooms than a one-minute one; the cap bounds analysis cost.
    """
    extra = max(0, math.floor((duration - 120.0) / 30.0))
    return max(base, min(maximum, base + extra))


def decode_media(source: BinaryIO, limits: DecodeLimits = DecodeLimits()) -> DecodedMedia:
    """Decode ``source`` (seekable, binary) into selected frames and audio; raises only ``DecodeError``."""
    try:
        head = _peek(source)
        return _decode(source, head, limits)
    except DecodeError:
        raise
    except av.error.FFmpegError as exc:
        raise DecodeError(ErrorCode.DECODE_FAILED, f"the video could not be decoded: {exc}") from exc
    except Exception as exc:
        raise DecodeError(ErrorCode.DECODE_FAILED, f"the video could not be read: {type(exc).__name__}: {exc}") from exc


def _decode(source: BinaryIO, head: bytes, limits: DecodeLimits) -> DecodedMedia:
    """The video on this thread, the audio on another (``_AudioPass``), each through its own container;
    one after the other when ``limits.threads`` is 1."""
    lock = threading.Lock()
    if limits.threads <= 1:
        with _open(_Window(source, lock), head, limits) as container:
            media = _decode_video(container, head, limits)
        media.audio_wav = _audio_only(_Window(source, lock), head, limits, threading.Event())
        return media
    audio = _AudioPass(lambda stop: _audio_only(_Window(source, lock), head, limits, stop))
    try:
        with _open(_Window(source, lock), head, limits) as container:
            media = _decode_video(container, head, limits)
        media.audio_wav = audio.result()
        return media
    finally:
        audio.cancel()


def _decode_video(container: av.container.InputContainer, head: bytes, limits: DecodeLimits) -> DecodedMedia:
    """Everything but the audio: checks, duration, candidates, selection, JPEG frames."""
    video = _video_stream(container, limits)
    declared = _declared_duration(container, video)
    if declared is not None and declared > limits.max_duration_s:
        raise _too_long(declared, limits)
    _discard_all_but(container, video)
    duration = declared if declared is not None else _measure(container, video, limits)
    if not duration or duration <= 0:
        raise DecodeError(ErrorCode.DECODE_FAILED, "the video stream holds no decodable frames")
    budget = frame_budget(duration, limits.frame_count, limits.max_frame_count)
    shots, video_end = _collect(container, video, duration, budget * CANDIDATES_PER_SLOT, limits)
    if not shots:
        if _looks_like_container(head):
            raise DecodeError(ErrorCode.TRUNCATED_VIDEO, "no frame could be decoded: the file looks cut off or damaged")
        raise DecodeError(ErrorCode.DECODE_FAILED, "no frame of the video could be decoded")
    if declared is not None and declared - video_end > max(2.0, TRUNCATION_SLACK * declared):
        raise DecodeError(
            ErrorCode.TRUNCATED_VIDEO,
            f"the video declares {declared:.1f} s but its frames stop at {video_end:.1f} s:"
            " the file looks cut off or damaged",
        )
    media = _selected_media(shots, budget, container, video, head, duration, limits)
    shots.clear()
    return media


def _selected_media(shots: list[_Shot], budget: int, container: av.container.InputContainer,
                    video: av.video.stream.VideoStream, head: bytes, duration: float,
                    limits: DecodeLimits) -> DecodedMedia:
    """``budget`` frames selected among the candidates and finished, with what the video is; the
    audio is the caller's to add."""
    chosen = select_frames([Candidate(s.timestamp, s.grey) for s in shots], budget)
    frames = _finish_all([shots[i] for i in chosen], limits)
    turn = (-shots[0].rotation) % 360
    coded = (video.codec_context.width, video.codec_context.height)
    width, height = (coded[1], coded[0]) if turn in (90, 270) else coded
    return DecodedMedia(
        duration=duration,
        width=width,
        height=height,
        rotation=turn,
        video_codec=video.codec.canonical_name,
        container=_container_name(container, head),
        frames=frames,
        audio_wav=None,
    )


class _Window:
    """A read position of its own over a source shared with another reader.

    Two containers (video seeks, audio pass) read the same seekable source from two threads; each
    gets a window, and the lock makes every seek-then-read atomic, so neither moves the other's
    position and the source (``BytesIO``, ``ChunkReader``) is only ever used by one thread at a time.
    """

    def __init__(self, source: BinaryIO, lock: threading.Lock) -> None:
        self._source = source
        self._lock = lock
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._position = seek_position(self._position, offset, whence, self._size)
        return self._position

    def _size(self) -> int:
        with self._lock:
            return self._source.seek(0, io.SEEK_END)

    def read(self, size: int = -1) -> bytes:
        with self._lock:
            self._source.seek(self._position)
            data = self._source.read(size)
        self._position += len(data or b"")
        return data or b""


class _AudioPass:
    """The audio decode, started at once on its own thread so that it overlaps the video seeks.

    Audio is thousands of small packets, each a few Python round trips holding the GIL; keyframe
    decoding and scaling are long libav calls that release it. Side by side on two cores they take
    little longer than the video alone. ``cancel`` stops the pass at its next packet and waits for
    it, so no read of the source outlives ``decode_media``, whatever it raised.
    """

    def __init__(self, work: Callable[[threading.Event], bytes | None]) -> None:
        self._stop = threading.Event()
        self._work = work
        self._outcome: list[bytes | None] = []
        self._error: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name="dodolens-audio", daemon=True)
        self._thread.start()

    def result(self) -> bytes | None:
        """The WAV (None without audio) once the pass is done; re-raises what the pass raised."""
        self._thread.join()
        if self._error:
            raise self._error[0]
        return self._outcome[0]

    def cancel(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            self._outcome.append(self._work(self._stop))
        except BaseException as exc:  # noqa: BLE001 - handed over to the caller's thread by result()
            self._error.append(exc)


def _audio_only(source: BinaryIO, head: bytes, limits: DecodeLimits, stop: threading.Event) -> bytes | None:
    """The first decodable audio track as WAV, from a container of its own; None when there is none.

    The video packets are discarded by the demuxer (an MP4's are then not even read). A file that
    does not open here fails the video side too, which reports why.
    """
    try:
        container = _open(source, head, limits)
    except DecodeError:
        return None
    with container:
        audio = next((s for s in container.streams.audio if s.codec_context is not None), None)
        if audio is None:
            return None
        _discard_all_but(container, audio)
        pcm = _Pcm(limits.audio_rate)
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


def _discard_all_but(container: av.container.InputContainer, keep: av.stream.Stream) -> None:
    """Have the demuxer drop every other stream's packets instead of reading them for nothing."""
    for stream in container.streams:
        if stream.index != keep.index:
            stream.discard = av.stream.Discard.all


def _peek(source: BinaryIO) -> bytes:
    """The first bytes, to tell a damaged video from something that never was one."""
    source.seek(0)
    head = source.read(512)
    source.seek(0)
    return bytes(head or b"")


def _looks_like_container(head: bytes) -> bool:
    """ISO BMFF box, EBML (Matroska/WebM), MPEG-TS / M2TS sync bytes, RIFF, Ogg or FLV signature."""
    transport = len(head) > 196 and (head[0] == head[188] == 0x47 or head[4] == head[196] == 0x47)
    return (
        head[4:8] in _ISO_BOXES
        or head.startswith(b"\x1a\x45\xdf\xa3")
        or transport
        or head.startswith((b"RIFF", b"OggS", b"FLV"))
    )


def _open(source: BinaryIO, head: bytes, limits: DecodeLimits) -> av.container.InputContainer:
    options = {"format_whitelist": ALLOWED_FORMATS, "max_pixels": str(max(limits.max_pixels, PROBE_MAX_PIXELS))}
    try:
        return av.open(source, mode="r", options=options, metadata_errors="replace")
    except av.error.FFmpegError as exc:
        if _looks_like_container(head):
            raise DecodeError(
                ErrorCode.TRUNCATED_VIDEO, "the file starts like a video but is incomplete or damaged (index missing?)"
            ) from exc
        raise DecodeError(ErrorCode.NOT_A_VIDEO, "the file is not a video in a supported container") from exc


def _video_stream(container: av.container.InputContainer, limits: DecodeLimits) -> av.video.stream.VideoStream:
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


def _declared_duration(container: av.container.InputContainer, video: av.video.stream.VideoStream) -> float | None:
    """The video stream's duration, else the container's; None when neither is known (live WebM, some TS)."""
    if video.duration and video.time_base and video.duration > 0:
        return float(video.duration * video.time_base)
    if container.duration and container.duration > 0:
        return container.duration / av.time_base
    return None


def _too_long(seconds: float, limits: DecodeLimits) -> DecodeError:
    return DecodeError(
        ErrorCode.TOO_LONG, f"the video runs {seconds:.1f} s or more, over the {limits.max_duration_s:g} s limit"
    )


def _measure(
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
                    raise _too_long(end, limits)
    except av.error.FFmpegError:
        pass
    return end


class _Pcm:
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


def _resample(
    audio: av.audio.stream.AudioStream, packet: av.Packet, resampler: av.AudioResampler, pcm: bytearray
) -> None:
    """Decode one audio packet into ``pcm``; a damaged packet is skipped, as players do."""
    try:
        for frame in audio.decode(packet):
            for mono in resampler.resample(frame):
                pcm += _samples(mono)
    except (av.error.FFmpegError, ValueError):
        return


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


def _collect(
    container: av.container.InputContainer,
    video: av.video.stream.VideoStream,
    duration: float,
    count: int,
    limits: DecodeLimits,
) -> tuple[list[_Shot], float]:
    """Candidates near ``count`` evenly spaced times, and how far into the video frames were found.

    For each target time: seek to the keyframe at or before it and take the first frame if it is
    within half a spacing (and half a frame, for rounded timestamps) of the target; otherwise
    (keyframes rarer than targets) decode forward to it. When keyframes proved rarer than the gap to the next target, keep decoding forward instead
    of seeking back to a keyframe already passed. A frame is never taken twice (strictly increasing
    pts), the last frames before EOF stand in for targets the video does not reach, and frames
    stamped outside the video's duration (damaged timestamps) are passed over. Each frame found is
    shrunk to a ``_Shot`` on a worker thread while the next one is sought and decoded.
    """
    base = video.time_base
    start = video.start_time or 0
    rate = video.average_rate or video.guessed_rate
    frame_s = float(1 / rate) if rate else 0.0
    if frame_s:
        count = max(1, min(count, round(duration / frame_s)))
    spacing = duration / count
    with _executor(limits, 1, "dodolens-shot") as shrink:
        shots: list[Future[_Shot]] = []
        frames: Iterator[av.VideoFrame] | None = None
        position: float | None = None
        reach = 0.0
        last_pts: int | None = None
        video_end = 0.0
        for index in range(count):
            target, earliest = (index + 0.5) * spacing, index * spacing - frame_s / 2 - 1e-6
            landed = True
            found: av.VideoFrame | None = None
            behind: av.VideoFrame | None = None
            ended = True
            try:
                if frames is None or position is None or not position < target <= position + reach:
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
                            behind = frame
                    if decoded >= MAX_FRAMES_PER_TARGET:
                        ended = False
                        break
            except av.error.FFmpegError:
                frames, ended = None, False
            found = found or behind
            if found is not None:
                shots.append(shrink.submit(_shot, found, start, base, limits))
                last_pts = found.pts
            if ended:
                break
        return [shot.result() for shot in shots], video_end


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


def _shot(frame: av.VideoFrame, start: int, base: Fraction, limits: DecodeLimits) -> _Shot:
    """Shrink a decoded frame to output size (still YUV: half the memory of RGB, and only chosen frames
    pay for the RGB conversion) plus a grey thumbnail, so the decoded frame itself can go.

    Both come from libswscale (area averaging, one thread: the callers already keep the cores busy);
    the thumbnail is the luma plane of a second, tiny scale, which costs a fifth of a PIL resize.
    """
    scale = min(1.0, limits.max_long_side / max(frame.width, frame.height))
    width, height = (max(2, round(side * scale / 2) * 2) for side in (frame.width, frame.height))
    small = frame.reformat(width=width, height=height, format="yuv420p", interpolation="AREA", threads=1)
    planes = small.to_ndarray()
    if width > GREY_WIDTH:
        grey_height = max(1, round(height * GREY_WIDTH / width))
        thumb = small.reformat(width=GREY_WIDTH, height=grey_height, interpolation="AREA", threads=1).planes[0]
        grey = np.frombuffer(thumb, np.uint8).reshape(grey_height, thumb.line_size)[:, :GREY_WIDTH].copy()
    else:
        grey = planes[:height].copy()
    return _Shot(
        timestamp=float((frame.pts - start) * base),
        pts=frame.pts,
        planes=planes,
        colorspace=small.colorspace,
        color_range=frame.color_range,
        grey=grey,
        rotation=round(frame.rotation / 90) * 90 % 360,
    )


def _finish(shot: _Shot, limits: DecodeLimits) -> Frame:
    """Convert a chosen candidate to RGB in its own colour matrix, turn it upright, encode it as JPEG.

    The RGB plane goes to PIL in one copy (``VideoFrame.to_image`` makes three, row by row).
    """
    small = av.VideoFrame.from_ndarray(shot.planes, format="yuv420p")
    rgb = small.reformat(
        format="rgb24", src_colorspace=shot.colorspace, src_color_range=shot.color_range, threads=1
    ).planes[0]
    image = Image.frombuffer("RGB", (rgb.width, rgb.height), rgb, "raw", "RGB", rgb.line_size, 1)
    if shot.rotation:
        image = image.transpose(_TRANSPOSE[shot.rotation])
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=limits.jpeg_quality)
    return Frame(
        timestamp=shot.timestamp,
        jpeg=out.getvalue(),
        width=image.width,
        height=image.height,
        sharpness=sharpness(shot.grey),
    )


def _finish_all(shots: list[_Shot], limits: DecodeLimits) -> list[Frame]:
    """``_finish`` for each chosen candidate, in order, on two threads: colour conversion and JPEG
    encoding run in libav and PIL without the GIL, so two frames are finished at once on two cores."""
    if len(shots) < 2 or limits.threads <= 1:
        return [_finish(shot, limits) for shot in shots]
    with ThreadPoolExecutor(max_workers=FINISH_THREADS, thread_name_prefix="dodolens-jpeg") as pool:
        return list(pool.map(_finish, shots, itertools.repeat(limits)))


class _Inline(Executor):
    """An executor that runs each task at once on the calling thread (``DecodeLimits.threads`` == 1)."""

    def submit(self, fn: Callable[..., T], /, *args: object, **kwargs: object) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - kept in the future, raised by result() as from a thread
            future.set_exception(exc)
        return future


def _executor(limits: DecodeLimits, workers: int, name: str) -> Executor:
    return _Inline() if limits.threads <= 1 else ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)


def _container_name(container: av.container.InputContainer, head: bytes) -> str:
    """A short name: the demuxer's family split into mp4/mov (major brand) and webm/matroska (EBML DocType)."""
    name = container.format.name
    if name.startswith("mov,"):
        return "mov" if container.metadata.get("major_brand", "").strip() == "qt" else "mp4"
    if name.startswith("matroska"):
        return "webm" if b"\x42\x82\x84webm" in head[:64] else "matroska"
    return name.split(",")[0]
