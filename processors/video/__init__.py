"""The decode side: video bytes in, a few upright JPEG frames and 16 kHz mono WAV audio out.

PyAV in process, nothing on disk. Two ways in: ``decode_media`` seeks through an upload already
stored (``seeking``), ``decode_arriving`` reads one front to back while it arrives (``progressive``).
Both open containers the same way (``container``), reduce decoded frames at once to small
candidates (``frames``), choose among them the same way (``select``) and decode the audio the same
way (``audio``). ``sniff`` reads what a file's first bytes say, ``media_reader`` gives PyAV files
over chunks, and ``threads`` owns every thread a decode starts.
"""

from processors.video.media import DecodedMedia, DecodeError, DecodeLimits, Frame
from processors.video.media_reader import ArrivingReader, ChunkReader, OrderedDigest
from processors.video.progressive import TooFewKeyframes, decode_arriving
from processors.video.seeking import decode_media
from processors.video.sniff import HEAD_BYTES, leading_chunks, streamable

__all__ = [
    "HEAD_BYTES",
    "ArrivingReader",
    "ChunkReader",
    "DecodeError",
    "DecodeLimits",
    "DecodedMedia",
    "Frame",
    "OrderedDigest",
    "TooFewKeyframes",
    "decode_arriving",
    "decode_media",
    "leading_chunks",
    "streamable",
]
