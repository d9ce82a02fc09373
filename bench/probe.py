"""A worker process's decode of one session, measured: ``python -m bench.probe REDIS_URL SESSION_ID``.

Runs :func:`processors.decode_jobs.decode_job` (what a decoder worker runs for each job) against the
session's real encrypted chunk stream, then prints its peak resident memory as JSON. Used by
:mod:`bench.memory` in a fresh process per measurement, so peaks do not carry over.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import orjson

from bench.harness import stream_config
from processors.config import WorkerConfig
from processors.decode_jobs import decode_job
from streams import keys
from streams.connection import connect, connect_blocking
from streams.jobs import Job


def status_kib(field: str) -> int:
    """A ``/proc/self/status`` figure in KiB (VmHWM: peak resident set; VmRSS: current)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


async def main(url: str, sid: str) -> dict[str, float]:
    r = connect(url)
    try:
        cfg = WorkerConfig(stream=stream_config(), consumer="bench-probe", processing_timeout_s=600)
        await r.ping()
        before = status_kib("VmHWM")
        started = time.perf_counter()
        blocking = connect_blocking(url)
        await decode_job(r, blocking, cfg, Job(keys.JOBS, "0-1", sid, {"sid": sid}))
        blocking.close()
        seconds = time.perf_counter() - started
        meta = {k.decode(): v.decode() for k, v in (await r.hgetall(keys.meta(sid))).items() if not k.startswith(b"c:")}
    finally:
        await r.aclose()
    return {"peak_kib": status_kib("VmHWM"), "before_kib": before, "seconds": seconds, "state": meta.get("state", ""),
            "duration": float(meta.get("duration", 0)), "error": meta.get("error", "")}


if __name__ == "__main__":
    sys.stdout.write(orjson.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))).decode() + "\n")
