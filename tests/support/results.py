"""A finished result as the analyzer would store it, with only the figures a test cares about chosen."""

from __future__ import annotations

from datetime import datetime, timezone

from schemas.result import AnalysisInfo, AnalysisStatus, Result, Timings, VideoInfo


def finished_result(sid: str, *, total_s: float, tokens: int, decode_s: float = 2.5, analysis_s: float = 7.0,
                    upload_s: float = 1.5, queue_s: float = 0.1, model: str = "gpt-4o-mini", frames_sent: int = 0,
                    cost_usd: float | None = None) -> Result:
    return Result(
        session_id=sid,
        created_at=datetime(2025, 1, 31, 8, tzinfo=timezone.utc),
        video=VideoInfo(duration_s=12.0, size_bytes=1000, width=1920, height=1080, codec="h264", container="mov,mp4"),
        frames=[1.0],
        analysis=AnalysisInfo(status=AnalysisStatus.COMPLETE, model=model, tokens=tokens, frames_sent=frames_sent,
                              cost_usd=cost_usd),
        timings=Timings(upload_s=upload_s, queue_s=queue_s, decode_s=decode_s, analysis_s=analysis_s, total_s=total_s),
    )
