"""What every benchmark needs: a private Redis, DodoLens gateway/worker processes, results, timing.

Gateways and workers run as real ``python -m dodolens.cli gateway|worker`` processes, as deployed,
so the benchmark process (client, local model server) never competes with them for one GIL.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from streams.config import MiB, StreamConfig
from streams.crypto import Keyring
from streams.embedded import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parent.parent
SECRET = bytes(range(32))
"""The master secret every process of a run shares (benchmarks only: a fixed, public value)."""


@dataclass
class Goal:
    """One benchmark's outcome, as BENCHMARKS.md shows it."""

    key: str
    title: str
    target: str
    baseline: str
    measured: str
    ratio: str
    passed: bool | None
    details: list[str] = field(default_factory=list)


def stream_config(chunk_size: int = MiB) -> StreamConfig:
    return StreamConfig(keyring=Keyring(SECRET), chunk_size=chunk_size)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100): what a reader expects from "p99" on few samples."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def median(values: list[float]) -> float:
    return statistics.median(values)


def env_for(redis_url: str, results_dir: str, **extra: str | int | float) -> dict[str, str]:
    """The environment of a DodoLens process of this run; no model unless ``OPENAI_*`` is given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DODOLENS_", "OPENAI_", "REDIS_"))}
    env.update({
        "REDIS_URL": redis_url,
        "DODOLENS_MASTER_SECRET": SECRET.hex(),
        "DODOLENS_RESULTS_DB": str(Path(results_dir) / "results.sqlite3"),
        "DODOLENS_MAX_SESSIONS": "2000",
        "DODOLENS_CLIENT_MAX_SESSIONS": "0",
        "PYTHONPATH": str(ROOT),
    })
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Processes:
    """DodoLens processes started by one benchmark; all stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, redis_url: str, results_dir: str, **extra: str | int | float) -> None:
        self.redis_url = redis_url
        self.logs = Path(results_dir)
        self.env = env_for(redis_url, results_dir, **extra)
        self.running: list[subprocess.Popen[bytes]] = []
        self._logs: dict[int, Path] = {}

    def gateway(self, **extra: str | int | float) -> str:
        port = free_port()
        self._start(["gateway", "--port", str(port)], extra)
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/readyz", self.running[-1], self.log_of(self.running[-1]))
        return url

    def worker(self, **extra: str | int | float) -> subprocess.Popen[bytes]:
        return self._start(["worker"], extra)

    def _start(self, args: list[str], extra: dict[str, str | int | float]) -> subprocess.Popen[bytes]:
        env = {**self.env, **{k: str(v) for k, v in extra.items()}}
        log = self.logs / f"{args[0]}-{len(self.running)}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen([sys.executable, "-m", "dodolens.cli", *args], cwd=ROOT, env=env,
                                       stdout=subprocess.DEVNULL, stderr=sink)
        self.running.append(process)
        self._logs[process.pid] = log
        return process

    def log_of(self, process: subprocess.Popen[bytes]) -> Path:
        """The process's stderr (log lines only, never media), to explain a failure."""
        return self._logs[process.pid]

    def stop(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.terminate()
        for process in self.running:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.running.clear()


def wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = log.read_text(errors="replace")
            raise RuntimeError(f"a DodoLens process exited with {process.returncode}: {err[-2000:]}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s")


@contextmanager
def deployment(**extra: str | int | float) -> Iterator[tuple[EmbeddedRedis, Processes]]:
    """A private Redis (no persistence) and a place for results; processes are added by the caller."""
    with tempfile.TemporaryDirectory(prefix="dodolens-bench-") as results, EmbeddedRedis() as redis:
        processes = Processes(redis.url, results, **extra)
        try:
            yield redis, processes
        finally:
            processes.stop()


async def wait_consumers(r, stream: str, group: str, count: int, timeout_s: float = 30.0) -> None:
    """Until ``count`` consumers have read from the group: the workers are up and listening."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if len(await r.xinfo_consumers(stream, group)) >= count:
                return
        except Exception:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError(f"fewer than {count} consumers joined {stream}/{group}")


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"
