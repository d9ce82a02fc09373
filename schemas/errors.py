"""Stable error codes shared by HTTP answers and ``error`` events."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    NOT_A_VIDEO = "not_a_video"
    NO_VIDEO_STREAM = "no_video_stream"
    TRUNCATED_VIDEO = "truncated_video"
    TOO_MANY_PIXELS = "too_many_pixels"
    TOO_LONG = "too_long"
    DECODE_FAILED = "decode_failed"
    MISSING_CHUNKS = "missing_chunks"
    SIZE_MISMATCH = "size_mismatch"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    MEDIA_EXPIRED = "media_expired"
    MEDIA_UNREADABLE = "media_unreadable"
    ANALYSIS_FAILED = "analysis_failed"
    ANALYSIS_TIMEOUT = "analysis_timeout"
    PROCESSING_TIMEOUT = "processing_timeout"
    RESULT_TOO_LARGE = "result_too_large"
    SINK_FAILED = "sink_failed"
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    MEMORY_PRESSURE = "memory_pressure"
    UPLOAD_IDLE = "upload_idle"
    INTERNAL = "internal_error"
