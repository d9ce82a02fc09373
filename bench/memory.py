"""Goal 2: bounded memory. Peak RSS of a decoding worker process on a 500 MB video vs a 50 MB one.

Both videos go through a real Redis chunk stream (1 MiB encrypted chunks) and are decoded by
:mod:`bench.probe` in a fresh process through the random-access ``ChunkReader``. The 50 MB video is
the reference clip's first seconds (stream copy); the 500 MB one is those seconds looped ten times
(stream copy, re-timed): same picture size and bitrate, ten times the duration and bytes.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid

import orjson

from bench import clips
from bench.harness import ROOT, Goal, stream_config
from streams import keys
from streams.chunks import append_chunk
from streams.connection import connect
from streams.embedded import EmbeddedRedis
from streams.sessions import create_session

TARGET = 1.2
SMALL, LOOPS = 50_000_000, 10


async def store(url: str, data: bytes) -> str:
    """A session holding ``data`` as its chunk stream, as the gateway would leave it."""
    cfg = stream_config()
    sid = uuid.uuid4().hex
    r = connect(url)
    try:
        await create_session(r, cfg, sid, len(data), "video/mp4")
        view = memoryview(data)
        for index in range(-(-len(data) // cfg.chunk_size)):
            await append_chunk(r, cfg, sid, index, view[index * cfg.chunk_size : (index + 1) * cfg.chunk_size])
    finally:
        await r.aclose()
    return sid


async def drop(url: str, sid: str) -> None:
    r = connect(url)
    try:
        await r.delete(*keys.session_keys(sid))
    finally:
        await r.aclose()


def probe(url: str, sid: str) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-m", "bench.probe", url, sid], cwd=ROOT, capture_output=True, check=True)
    return orjson.loads(done.stdout.splitlines()[-1])


def peaks_of(videos: dict[str, bytes], rounds: int = 2) -> dict[str, list[dict[str, float]]]:
    """Each video decoded ``rounds`` times, alternating, each time by a fresh worker process."""
    peaks: dict[str, list[dict[str, float]]] = {name: [] for name in videos}
    with EmbeddedRedis() as redis:
        for _ in range(rounds):
            for name, data in videos.items():
                sid = asyncio.run(store(redis.url, data))
                try:
                    peaks[name].append(probe(redis.url, sid))
                finally:
                    asyncio.run(drop(redis.url, sid))
    return peaks


def run(reference: bytes) -> Goal:
    small, seconds = clips.sized(reference, SMALL)
    big = clips.remux(small, loops=LOOPS)
    peaks = peaks_of({"small": small, "big": big})
    small_peak = max(p["peak_kib"] for p in peaks["small"]) / 1024
    big_peak = max(p["peak_kib"] for p in peaks["big"]) / 1024
    ratio = big_peak / small_peak
    before = max(p["before_kib"] for run in peaks.values() for p in run) / 1024
    states = {p["state"] for run in peaks.values() for p in run}

    def line(name: str, data: bytes, span: float) -> str:
        runs = peaks[name]
        rss = ", ".join(f"{p['peak_kib'] / 1024:.0f}" for p in runs)
        took = ", ".join(f"{p['seconds']:.1f}" for p in runs)
        return (f"{name} video: {len(data) / 1e6:.0f} MB, {span:.0f} s 1080p H.264 12 Mb/s + AAC; peak RSS {rss} MiB "
                f"(peak before decoding {runs[0]['before_kib'] / 1024:.0f} MiB), decode {took} s")

    return Goal(
        "memory", "2. Bounded memory: decoding a 500 MB video through the chunk stream",
        f"peak RSS on 500 MB <= {TARGET:g}x peak on 50 MB",
        f"50 MB video: peak RSS {small_peak:.0f} MiB", f"500 MB video: peak RSS {big_peak:.0f} MiB",
        f"{ratio:.2f}x", ratio <= TARGET and states == {"processing"},
        [
            line("small", small, seconds),
            line("big", big, seconds * LOOPS),
            f"growth over the process's peak before decoding (imports, Redis client): {small_peak - before:.0f} MiB vs "
            f"{big_peak - before:.0f} MiB ({(big_peak - before) / (small_peak - before):.2f}x): what still grows with "
            "duration is the frames kept (one per new view, held as JPEG, at most DODOLENS_MAX_FRAMES) and the "
            "16 kHz PCM track (32 KB/s); candidates are reduced at once and only a few held",
            f"the 500 MB video is the 50 MB one's packets looped {LOOPS} times (stream copy, re-timed): a valid "
            f"{seconds * LOOPS:.0f} s MP4 with moov at the end, made in seconds instead of re-encoding 5 minutes of 1080p",
            "each decode runs processors.decoder.decode_job (ChunkReader over 1 MiB AES-GCM chunks in a private "
            "redis-server) in a fresh process (python -m bench.probe); peak = VmHWM of /proc/self/status; "
            f"session state afterwards: {', '.join(sorted(states))} (frames stored, queued for analysis)",
        ],
    )
