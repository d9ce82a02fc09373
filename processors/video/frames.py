"""A decoded frame reduced at once to what selection needs (``Shot``), and a chosen one finished as JPEG."""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from PIL import Image

from processors.video.media import DecodeLimits, Frame
from processors.video.select import sharpness

GREY_WIDTH = 128
"""Width of the grey picture frame selection works on: enough for blur to show, cheap to compare."""

_TRANSPOSE = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}


@dataclass
class Shot:
    """A candidate frame: yuv420p planes at output size (not yet rotated) plus its selection data."""

    timestamp: float
    pts: int
    planes: np.ndarray
    colorspace: int
    color_range: int
    grey: np.ndarray
    rotation: int


def shrink(frame: av.VideoFrame, start: int, base: Fraction, limits: DecodeLimits) -> Shot:
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
    return Shot(
        timestamp=float((frame.pts - start) * base),
        pts=frame.pts,
        planes=planes,
        colorspace=small.colorspace,
        color_range=frame.color_range,
        grey=grey,
        rotation=round(frame.rotation / 90) * 90 % 360,
    )


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
