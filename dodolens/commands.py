"""``dodolens analyze``, ``up``, ``gateway``, ``worker`` and ``erase``: the pipeline's own commands."""

from __future__ import annotations

import argparse
import asyncio
import mimetypes
import mmap
import os
import signal
import sys

import orjson
from rich.console import Console

from dodolens.failures import Exit
from dodolens.local import announce, with_local_up, withdraw
from dodolens.settings import Settings, SettingsError
from dodolens.show import console, inventory_table, print_event
from streams.embedded import EmbeddedRedis
from streams.threads import in_thread


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    if command == "analyze":
        parser.add_argument("video", nargs="?", help="video file; a generated sample when omitted")
        parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
    elif command in ("up", "gateway"):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
    elif command == "erase":
        parser.add_argument("session_id")


async def analyze(args: argparse.Namespace, settings: Settings) -> int:
    if args.video:
        content_type = mimetypes.guess_type(args.video)[0] or "application/octet-stream"
        with open(args.video, "rb") as file:
            if os.fstat(file.fileno()).st_size == 0:
                raise SettingsError(f"{args.video} is empty")
            with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                return await analyze_video(args, settings, mapped, content_type)
    from dodolens.sample import sample_video

    console.print("[dim]no VIDEO given: using a generated 12 s sample home tour[/]")
    return await analyze_video(args, settings, await in_thread(sample_video), "video/mp4")


async def analyze_video(args: argparse.Namespace, settings: Settings, data: bytes | mmap.mmap, content_type: str) -> int:
    """Run the pipeline in-process on ``data`` (a file is memory-mapped, never read whole); no gateway.

    The embedded Redis is launched first and comes up while the pipeline's modules are imported."""
    embedded = None if settings.redis_url else EmbeddedRedis().launch()
    try:
        from dodolens.inprocess import analyze_in_process
        from dodolens.runner import Runtime

        async with Runtime(settings, gateway=False, embedded=embedded) as runtime:
            assert runtime.redis is not None and runtime.stream is not None
            outcome = await analyze_in_process(runtime.redis, settings.gateway_config(runtime.stream), data,
                                               content_type=content_type, on_event=None if args.json else print_event)
    finally:
        if embedded is not None:
            embedded.stop()
    if args.json:
        sys.stdout.write(orjson.dumps({"session_id": outcome.session_id, "events": [e["type"] for e in outcome.events],
                                       "result": outcome.result, "error": outcome.error}, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif outcome.result:
        Console().print(inventory_table(outcome.result))
    if outcome.error:
        console.print(f"[red]error[/] {outcome.error.get('code')}: {outcome.error.get('message')}")
        return 1
    return 0


async def serve(args: argparse.Namespace, settings: Settings) -> int:
    from dodolens.runner import Runtime

    gateway, workers = args.command != "worker", args.command != "gateway"
    if not settings.master_secret and settings.redis_url and not (gateway and workers):
        raise SettingsError("separate gateway and worker processes must share DODOLENS_MASTER_SECRET")
    if workers:
        from dodolens.doctor import ready

        if not await ready(settings, console):
            return Exit.CONFIG
    runtime = Runtime(settings, gateway=gateway, workers=workers, host=getattr(args, "host", "127.0.0.1"),
                      port=getattr(args, "port", 0))
    await runtime.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if gateway:
        console.print(f"DodoLens gateway on {runtime.url} (redis {'embedded' if runtime.embedded else 'external'})")
    if workers:
        console.print("DodoLens workers running (decoders, analyzers)")
    announced = None
    if args.command == "up":
        assert runtime.stream is not None
        announced = announce(runtime.redis_url, cluster=settings.redis_cluster, results_db=settings.sink.results_db,
                         master_secret=None if settings.master_secret else runtime.stream.keyring.master)
        console.print(f"dodolens lag / report / replay / erase find this Redis by themselves ({announced}); "
                      f"or, in any shell: export REDIS_URL={runtime.redis_url}", soft_wrap=True)
    try:
        waiter = asyncio.create_task(runtime.wait())
        await asyncio.wait({waiter, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if announced is not None:
            withdraw(announced)
        await runtime.stop()
    return 0


ERASE_EXIT = {"erased": 0, "already_erased": 3, "unknown": 4}
"""``dodolens erase`` exit codes, so a script tells the three apart (2 stays "bad usage")."""


async def erase(args: argparse.Namespace, settings: Settings) -> int:
    from dodolens.admin import NotASessionId, erase_everywhere

    try:
        outcome, receipt = await erase_everywhere(with_local_up(settings, "erase"), args.session_id)
    except NotASessionId as exc:
        console.print(f"[red]dodolens:[/] {exc}")
        return Exit.USAGE
    sys.stdout.write(orjson.dumps(receipt, option=orjson.OPT_INDENT_2).decode() + "\n")
    if outcome.value != "erased":
        status = ERASE_EXIT[outcome.value]
        console.print(f"[yellow]{args.session_id}: {outcome.value.replace('_', ' ')}[/] (exit {status})")
    return ERASE_EXIT[outcome.value]


async def doctor(args: argparse.Namespace, settings: Settings) -> int:
    from dodolens.doctor import doctor as check_everything

    return await check_everything(settings)


HANDLERS = {"analyze": analyze, "up": serve, "gateway": serve, "worker": serve, "erase": erase, "doctor": doctor}
