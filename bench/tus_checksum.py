"""Issue 13: tus checksums hold no body. Gateway peak RSS under 10 concurrent checksummed tus PATCHes
of 64 MiB each, against the same gateway process with none in flight.

A checksummed PATCH is staged chunk by chunk (sealed into Redis while it is hashed), so the gateway
should hold about a chunk per request, whatever the body's size. Both a right and a wrong checksum
are measured: a wrong one is the case that used to hold the whole body before answering 460.
The peak is the process's VmHWM, reset (``/proc/<pid>/clear_refs``) before each round.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from pathlib import Path

import httpx

from bench.harness import Goal, deployment
from streams.config import MiB

TARGET = 1.2
CONCURRENT, SIZE = 10, 64 * MiB
TUS = {"Tus-Resumable": "1.0.0"}


def status_kib(pid: int, field: str) -> int:
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith(field + ":"))
    return int(line.split()[1])


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


async def patches(base: str, body: bytes, checksum: str | None) -> list[int]:
    """``CONCURRENT`` uploads of ``body`` in one PATCH each, all at once; each is terminated after."""
    async with httpx.AsyncClient(base_url=base, timeout=600) as http:
        async def one() -> int:
            created = await http.post("/files/", headers={**TUS, "Upload-Length": str(len(body))})
            location = created.headers["Location"]
            headers = {**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
            if checksum is not None:
                headers["Upload-Checksum"] = checksum
            sent = await http.patch(location, headers=headers, content=body)
            await http.delete(location, headers=TUS)
            return sent.status_code

        return list(await asyncio.gather(*(one() for _ in range(CONCURRENT))))


def run() -> Goal:
    body = os.urandom(SIZE)
    right = "sha1 " + base64.b64encode(hashlib.sha1(body).digest()).decode()
    wrong = "sha1 " + base64.b64encode(hashlib.sha1(b"not the body").digest()).decode()
    with deployment() as (_redis, processes):
        base = processes.gateway()
        pid = processes.running[-1].pid
        asyncio.run(patches(base, body[: MiB], None))  # warm: first requests, pools, buffers
        idle = status_kib(pid, "VmRSS") / 1024
        peaks: dict[str, float] = {}
        statuses: dict[str, list[int]] = {}
        for name, checksum in (("no checksum", None), ("right checksum", right), ("wrong checksum", wrong)):
            reset_peak(pid)
            statuses[name] = asyncio.run(patches(base, body, checksum))
            peaks[name] = status_kib(pid, "VmHWM") / 1024
    checksummed = max(peaks["right checksum"], peaks["wrong checksum"])
    ratio = checksummed / idle
    expected = {"no checksum": 204, "right checksum": 204, "wrong checksum": 460}
    answered = all(set(statuses[name]) == {code} for name, code in expected.items())
    return Goal(
        "tus_checksum", "Issue 13: gateway memory under 10 concurrent checksummed 64 MiB tus PATCHes",
        f"peak RSS <= {TARGET:g}x the gateway's RSS with none in flight",
        f"no PATCH in flight: RSS {idle:.0f} MiB", f"checksummed: peak RSS {checksummed:.0f} MiB",
        f"{ratio:.2f}x", ratio <= TARGET and answered,
        [
            f"{CONCURRENT} concurrent PATCHes of {SIZE // MiB} MiB each (one per upload, creation then PATCH then "
            "termination) on one gateway process (python -m dodolens.cli gateway, 1 MiB chunks), private redis-server",
            *(f"{name}: peak RSS {peaks[name]:.0f} MiB, answers {sorted(set(statuses[name]))}" for name in expected),
            f"with none in flight: RSS {idle:.0f} MiB after a 1 MiB warm-up round; peak = VmHWM, reset before each round",
        ],
    )
