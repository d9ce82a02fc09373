"""A worker's side of the operator requests on ``dodo:control`` (``streams.control``).

``gc``: every worker collects its memory and answers what it freed; the first to claim the sweep
runs the cleanup sweep now, rather than at its next interval, and answers what it deleted.
"""

from __future__ import annotations

import asyncio
from typing import Any

from processors.config import WorkerConfig
from processors.sweeper import SweepReport, sweep_once
from streams.connection import Redis
from streams.control import answer, claim, listen, reclaim_memory


def sweep_summary(report: SweepReport) -> dict[str, int]:
    """Counts only: the admin page shows no session id."""
    return {"orphan_keys": len(report.orphans_deleted), "orphan_bytes": report.orphan_bytes,
            "expired_sessions": len(report.expired_sessions), "pressure_failed": len(report.pressure_failed),
            "consumers_forgotten": len(report.consumers_forgotten)}


async def run_control(r: Redis, cfg: WorkerConfig, stop: asyncio.Event) -> None:
    async def handle(request: dict[str, str]) -> None:
        if request.get("action") != "gc":
            return
        body: dict[str, Any] = {"role": "worker", "name": cfg.consumer, **reclaim_memory()}
        if await claim(r, request["id"], "sweep"):
            body["sweep"] = sweep_summary(await sweep_once(r, cfg.stream))
        await answer(r, request["id"], body)

    await listen(r, handle, stop, block_ms=cfg.block_ms)
