"""A decoded frame reduced at once to what selection needs, and a chosen one finished as JPEG.

Every candidate becomes a small grey picture (``Candidate``) straight from the decoder's frame; only
a candidate selection may keep is also shrunk to output size (``Shot``, still YUV), so a decode holds
a few output-size pictures whatever the video's length, and the full-size frame goes at once.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from PIL import Image

from processors.video.media import DecodeLimits, Frame
from processors.video.select import Candidate, sharpness

GREY_WIDTH = 128
"""Width of the grey picture frame selection works on: enough for blur to show, cheap to compare."""

_TRANSPOSE = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}


@dataclass(frozen=True)
class Timeline:
    """How a video stream's frames are placed and shaped: ``origin`` is the container's start in the
    stream's ``base`` (so frame times are the audio's), ``aspect`` its pixels' width over height."""

    origin: int
    base: Fraction
    aspect: Fraction = Fraction(1)

    def seconds(self, pts: int) -> float:
        return float((pts - self.origin) * self.base)


@dataclass
class Shot:
    """A candidate frame: yuv420p planes at output size (not yet rotated) plus its selection data."""

    timestamp: float
    planes: np.ndarray
    colorspace: int
    color_range: int
    grey: np.ndarray
    rotation: int


def shown_size(width: int, height: int, aspect: Fraction) -> tuple[float, float]:
    """The picture's size with square pixels: an anamorphic recording is shown wider than stored."""
    return (width * float(aspect) if aspect > 0 else float(width)), float(height)


def output_size(width: int, height: int, aspect: Fraction, long_side: int) -> tuple[int, int]:
    """Even picture size shown with square pixels, no side over ``long_side``."""
    shown_w, shown_h = shown_size(width, height, aspect)
    scale = min(1.0, long_side / max(shown_w, shown_h))
    return max(2, round(shown_w * scale / 2) * 2), max(2, round(shown_h * scale / 2) * 2)


def observe(frame: av.VideoFrame, timeline: Timeline, limits: DecodeLimits) -> tuple[Candidate, Callable[[], Shot]]:
    """The candidate a decoded frame is, and how to shrink it if selection asks (before the frame goes).

    Both come from libswscale (area averaging, one thread: the callers already keep the cores busy).
    """
    width, height = output_size(frame.width, frame.height, timeline.aspect, limits.max_long_side)
    grey_w, grey_h = output_size(width, height, Fraction(1), GREY_WIDTH)
    thumb = frame.reformat(width=grey_w, height=grey_h, format="yuv420p", interpolation="AREA", threads=1).planes[0]
    grey = np.frombuffer(thumb, np.uint8).reshape(grey_h, thumb.line_size)[:, :grey_w].copy()
    timestamp = timeline.seconds(frame.pts)

    def shrink() -> Shot:
        small = frame.reformat(width=width, height=height, format="yuv420p", interpolation="AREA", threads=1)
        return Shot(
            timestamp=timestamp,
            planes=small.to_ndarray(),
            colorspace=small.colorspace,
            color_range=frame.color_range,
            grey=grey,
            rotation=round(frame.rotation / 90) * 90 % 360,
        )

    return Candidate(timestamp, grey), shrink


def finish(shot: Shot, limits: DecodeLimits) -> Frame:
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
