"""A private ``redis-server`` for one process tree: loopback, free port, no persistence."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field

import redis


class EmbeddedRedisError(RuntimeError):
    """redis-server is missing or did not come up."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmbeddedRedis:
    """Start with :meth:`start`, stop with :meth:`stop`; ``url`` is where it listens.

    ``--save "" --appendonly no`` and ``--dir`` of a RAM-less default are deliberate: this
    Redis holds media and must never write it to disk.
    """

    port: int = field(default_factory=free_port)
    maxmemory: str | None = None
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise EmbeddedRedisError("redis-server not found: install it (Debian: apt-get install -y redis-server)")
        args = [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--protected-mode", "yes", "--loglevel", "warning", "--logfile", "",
            "--hz", "100",  # a stop (SIGTERM) is acted on at the next cron tick: 10 ms, not the default 100
        ]
        if self.maxmemory:
            args += ["--maxmemory", self.maxmemory, "--maxmemory-policy", "noeviction"]
        return args + list(self.extra_args)

    def launch(self) -> "EmbeddedRedis":
        """Start the server without waiting for it: it comes up while the caller does other work
        (``dodolens analyze`` imports the pipeline meanwhile); :meth:`start` then waits for it."""
        if self.process is None:
            self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return self

    def start(self, timeout_s: float = 10.0) -> "EmbeddedRedis":
        self.launch()
        assert self.process is not None
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                if self.process.poll() is not None:
                    err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                    raise EmbeddedRedisError(f"redis-server exited with {self.process.returncode}: {err.strip()}")
                try:
                    if client.ping():
                        return self
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise EmbeddedRedisError(f"redis-server did not answer on port {self.port}") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """Die like a crash would: SIGKILL, nothing flushed (there is nothing to flush)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def __enter__(self) -> "EmbeddedRedis":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
