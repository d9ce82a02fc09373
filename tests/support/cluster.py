"""A throwaway Redis Cluster on loopback: three masters, no replicas, no persistence.

Real ``redis-server --cluster-enabled yes`` processes joined by ``redis-cli --cluster create``, so
tests see MOVED redirections, per-node CONFIG/INFO answers and cross-slot rules as production would.
The only files written are each node's cluster metadata (``nodes-P.conf``) in a temporary directory.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from streams.embedded import EmbeddedRedisError

BUS_OFFSET = 10_000


@dataclass
class RedisCluster:
    """``with RedisCluster() as c: c.url`` — any node's URL; a cluster client discovers the rest."""

    masters: int = 3
    ports: list[int] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    directory: str | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self, timeout_s: float = 20.0) -> "RedisCluster":
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if server is None or cli is None:
            raise EmbeddedRedisError("redis-server and redis-cli are needed (Debian: apt-get install -y redis-server)")
        self.directory = tempfile.mkdtemp(prefix="dodolens-cluster-")
        self.ports = cluster_ports(self.masters)
        try:
            for port in self.ports:
                self.processes.append(subprocess.Popen(
                    [server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                     "--cluster-config-file", f"nodes-{port}.conf", "--dir", self.directory, "--save", "",
                     "--appendonly", "no", "--loglevel", "warning", "--logfile", ""],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                ))
            deadline = time.monotonic() + timeout_s
            for port in self.ports:
                _wait(lambda: _command(port, "PING"), deadline, f"node {port}")
            subprocess.run(
                [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports), "--cluster-replicas", "0",
                 "--cluster-yes"],
                check=True, capture_output=True, timeout=timeout_s,
            )
            for port in self.ports:
                _wait(lambda: b"cluster_state:ok" in _command(port, "CLUSTER", "INFO"), deadline,
                      f"cluster_state:ok on {port}")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> "RedisCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cluster_ports(count: int) -> list[int]:
    """Free ports whose cluster bus port (``port + 10000``) is free and valid too: ephemeral ports are
    often above 55535, where the bus port would not exist."""
    ports: list[int] = []
    rng = random.Random()
    while len(ports) < count:
        port = rng.randrange(20_000, 40_000)
        if port not in ports and _free(port) and _free(port + BUS_OFFSET):
            ports.append(port)
    return ports


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _command(port: int, *args: str) -> Any:
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    try:
        return client.execute_command(*args)
    finally:
        client.close()


def _wait(check: Callable[[], Any], deadline: float, what: str) -> None:
    while True:
        try:
            if check():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise EmbeddedRedisError(f"Redis Cluster did not come up: no {what}")
        time.sleep(0.05)
