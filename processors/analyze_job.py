"""Analyzer job: frames + audio -> model -> result (< 5 KB) -> sink; media deleted whatever happens."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import TYPE_CHECKING

from processors.analyzer import Analysis, AnalysisError, analyze, time_needed
from processors.config import WorkerConfig
from processors.delivery import deliver
from processors.sinks import ResultSink
from processors.speech import wav_seconds
from schemas.errors import ErrorCode
from schemas.events import AnalysisProgressData, utc_now
from schemas.result import (AnalysisInfo, AnalysisStatus, Result, ResultTooLarge, Timings, VideoInfo, encode_result,
                            fitted)
from streams.audit import audit
from streams.connection import Redis
from streams.events import publish
from streams.jobs import Job
from streams.lifecycle import fail_session, pending_meta
from streams.media import delete_media, load_audio, load_frames
from streams.results import keep_result
from streams.sessions import State, get_meta, is_erased, set_state

if TYPE_CHECKING:
    import openai

MAX_WARNINGS, MAX_WARNING_CHARS = 5, 300
"""Warnings kept in the result, which must stay under 5 KB whatever went wrong."""


def build_result(sid: str, meta: dict[str, str], frames: list[float], analysis: Analysis, analysis_s: float,
                 finished: datetime) -> Result:
    """Assemble the persisted result from the session's meta and the analysis, ``finished`` now (pure)."""
    now = finished.timestamp()
    created = float(meta["created_at"])
    uploaded = float(meta.get("uploaded_at", created))
    started = float(meta.get("processing_started_at", uploaded))
    return Result(
        session_id=sid,
        created_at=finished,
        video=VideoInfo(
            duration_s=round(float(meta.get("duration", 0)), 3),
            size_bytes=int(meta["size"]),
            width=int(meta.get("width", 0)),
            height=int(meta.get("height", 0)),
            codec=meta.get("codec", ""),
            container=meta.get("container", ""),
            rotation=int(meta.get("rotation", 0)),
            has_audio=meta.get("has_audio") == "1",
        ),
        frames=[round(t, 2) for t in frames],
        analysis=AnalysisInfo(
            status=AnalysisStatus.SKIPPED if analysis.inventory is None else AnalysisStatus.COMPLETE,
            reason=analysis.skipped_reason,
            model=analysis.model,
            transcript_chars=len(analysis.transcript or ""),
            tokens=analysis.tokens,
            frames_sent=analysis.usage.frames_sent,
            input_tokens=analysis.usage.input_tokens,
            image_tokens=analysis.usage.image_tokens,
            text_tokens=analysis.usage.text_tokens,
            output_tokens=analysis.usage.output_tokens,
            cost_usd=analysis.cost_usd,
            warnings=[warning[:MAX_WARNING_CHARS] for warning in analysis.warnings[:MAX_WARNINGS]],
        ),
        inventory=analysis.inventory,
        timings=Timings(
            upload_s=round(uploaded - created, 3),
            queue_s=round(started - uploaded, 3),
            decode_s=float(meta.get("decode_s", 0)),
            analysis_s=round(analysis_s, 3),
            total_s=round(now - uploaded, 3),
        ),
    )


def analysis_budget(cfg: WorkerConfig, elapsed: float, frame_count: int, audio: bytes | None) -> float:
    """Seconds the analysis may run: what is left of ``processing_timeout_s`` after the decode, but
    never less than a healthy analysis of this much work needs (``time_needed``), so a long tour with
    many batches and a long soundtrack is not failed for its length; a stalled one still ends."""
    needed = time_needed(frame_count, wav_seconds(audio) if audio else 0.0, cfg.analyzer)
    return max(1.0, cfg.processing_timeout_s - elapsed, needed)


async def analyze_job(r: Redis, cfg: WorkerConfig, sink: ResultSink, job: Job,
                      model: openai.AsyncOpenAI | None = None) -> None:
    """Frames and audio -> the model -> the result sink; ``model`` is the worker's long-lived client."""
    sid = job.session_id
    meta = await pending_meta(r, sid)
    if meta is None or meta.get("state") == State.STORING:
        return
    try:
        if not await set_state(r, cfg.stream, sid, State.ANALYZING):
            return
        frames = await load_frames(r, cfg.stream, sid)
        audio = await load_audio(r, cfg.stream, sid)
        if not frames:
            await fail_session(r, cfg.stream, sid, ErrorCode.MEDIA_EXPIRED,
                               "the extracted frames expired or were lost before analysis; upload again", retryable=True)
            return
        timestamps = [t for t, _ in frames]
        await audit(r, cfg.stream, "media_access", sid, stage="analysis", consumer=cfg.consumer)

        async def progress(stage: str, fraction: float) -> None:
            await publish(r, cfg.stream, sid, AnalysisProgressData(stage=stage, progress=round(fraction, 3)))

        started = time.time()
        elapsed = started - float(meta.get("processing_started_at", started))
        budget = analysis_budget(cfg, elapsed, len(frames), audio)
        try:
            analysis = await asyncio.wait_for(analyze(frames, audio, cfg.analyzer, progress, model), budget)
        except asyncio.TimeoutError:
            await fail_session(r, cfg.stream, sid, ErrorCode.PROCESSING_TIMEOUT,
                               f"the analysis took longer than its {budget:.0f} s", retryable=True)
            return
        except AnalysisError as exc:
            await fail_session(r, cfg.stream, sid, exc.code, exc.message, retryable=exc.retryable)
            return
        finally:
            frames.clear()
            audio = None
        await delete_media(r, sid)
        if analysis.warnings:
            await publish(r, cfg.stream, sid,
                          AnalysisProgressData(stage="inventory", progress=1.0, warnings=analysis.warnings))
        result = fitted(build_result(sid, await get_meta(r, sid) or meta, timestamps, analysis, time.time() - started,
                                     utc_now()))
        try:
            blob = encode_result(result)
        except ResultTooLarge as exc:
            await fail_session(r, cfg.stream, sid, ErrorCode.RESULT_TOO_LARGE, str(exc))
            return
        if await is_erased(r, cfg.stream, sid):
            return
        await keep_result(r, cfg.stream, sid, blob, ttl_s=cfg.delivery.hold_s, lease_until=cfg.delivery.lease())
        await set_state(r, cfg.stream, sid, State.STORING)
        await deliver(r, cfg.stream, cfg.delivery, sink, sid)
    finally:
        await delete_media(r, sid)
