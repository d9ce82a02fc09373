"""The ``dodolens`` command: analyze a video end to end, serve, run workers, erase."""

from __future__ import annotations

import argparse
import asyncio
import logging
import mimetypes
import mmap
import os
import signal
import sys
from collections.abc import Coroutine
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from dodolens import ops, upload
from dodolens.client import analyze_bytes
from dodolens.runner import Runtime
from dodolens.settings import Settings, SettingsError
from schemas.catalogue import lookup

console = Console(stderr=True)


def print_event(event: dict[str, Any]) -> None:
    data = {k: v for k, v in event.get("data", {}).items() if k != "result"}
    console.print(f"[dim]{event.get('timestamp', '')[11:23]}[/] [bold]{event['type']}[/] {orjson.dumps(data).decode()[:160]}")


def inventory_table(result: dict[str, Any]) -> Table:
    table = Table(title=f"Inventory — {result['video']['duration_s']:.1f} s video, {len(result['frames'])} frames")
    for column in ("room", "item", "qty", "m³"):
        table.add_column(column, justify="right" if column in ("qty", "m³") else "left")
    inventory = result.get("inventory")
    if not inventory:
        table.caption = f"analysis skipped: {result['analysis'].get('reason')}"
        return table
    for room in inventory["rooms"]:
        for item in room["items"]:
            volume = item.get("volume_m3", 0) * item.get("quantity", 1)
            label = item.get("label") or (lookup(item["catalogue_id"]).label("en") if item.get("catalogue_id") else "?")
            table.add_row(room["name"], label + (" (stays)" if item.get("excluded") else ""), str(item.get("quantity", 1)), f"{volume:.2f}")
    table.caption = f"total {inventory['total_volume_m3']:.2f} m³ in {inventory['total_items']} items"
    analysis = result["analysis"]
    if analysis.get("frames_sent"):
        cost = "" if analysis.get("cost_usd") is None else f", about ${analysis['cost_usd']:.4f}"
        table.caption += (f"\n{analysis['frames_sent']} frames sent, {analysis.get('input_tokens', 0)} input and "
                          f"{analysis.get('output_tokens', 0)} output tokens{cost}")
    return table


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
    return await analyze_video(args, settings, await asyncio.to_thread(sample_video), "video/mp4")


async def analyze_video(args: argparse.Namespace, settings: Settings, data: bytes | mmap.mmap, content_type: str) -> int:
    """Run the pipeline in-process on ``data`` (a file is memory-mapped, never read whole)."""
    async with Runtime(settings) as runtime:
        outcome = await analyze_bytes(runtime.url, data, content_type=content_type,
                                      on_event=None if args.json else print_event)
    if args.json:
        sys.stdout.write(orjson.dumps({"session_id": outcome.session_id, "events": [e["type"] for e in outcome.events],
                                       "result": outcome.result, "error": outcome.error}, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif outcome.result:
        Console().print(inventory_table(outcome.result))
    if outcome.error:
        console.print(f"[red]error[/] {outcome.error.get('code')}: {outcome.error.get('message')}")
        return 1
    return 0


async def serve(args: argparse.Namespace, settings: Settings, *, gateway: bool, workers: bool) -> int:
    if not settings.master_secret and settings.redis_url and not (gateway and workers):
        raise SettingsError("separate gateway and worker processes must share DODOLENS_MASTER_SECRET")
    if workers:
        from dodolens.doctor import ready

        if not await ready(settings, console):
            return 2
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
    waiter = asyncio.create_task(runtime.wait())
    await asyncio.wait({waiter, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED)
    await runtime.stop()
    return 0


async def erase(args: argparse.Namespace, settings: Settings) -> int:
    from dodolens.admin import erase_everywhere

    receipt = await erase_everywhere(settings, args.session_id)
    sys.stdout.write(orjson.dumps(receipt, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dodolens", description="Ephemeral video analysis: video in, moving inventory out.")
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("analyze", help="analyze a video end to end in this process (embedded Redis unless REDIS_URL)")
    a.add_argument("video", nargs="?", help="video file; a generated sample when omitted")
    a.add_argument("--json", action="store_true", help="print the outcome as JSON")
    for name, text in (("up", "serve gateway + workers"), ("gateway", "serve the gateway only")):
        s = sub.add_parser(name, help=text)
        s.add_argument("--host", default="127.0.0.1")
        s.add_argument("--port", type=int, default=8000)
    sub.add_parser("worker", help="run decoder and analyzer workers only")
    sub.add_parser("doctor", help="check the configured models and the result table, as up and worker do at start")
    e = sub.add_parser("erase", help="erase a session everywhere (GDPR art. 17)")
    e.add_argument("session_id")
    upload.add_parser(sub)
    ops.add_parsers(sub)
    return p


def run(main: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop where it is installed (it comes with uvicorn[standard]): a faster event loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        settings = Settings.from_env()
        if args.command == "analyze":
            return run(analyze(args, settings))
        if args.command in ("up", "gateway", "worker"):
            return run(serve(args, settings, gateway=args.command != "worker", workers=args.command != "gateway"))
        if args.command == "erase":
            return run(erase(args, settings))
        if args.command == "doctor":
            from dodolens.doctor import doctor

            return run(doctor(settings))
        if args.command == "upload":
            return upload.main(args)
        if args.command in ops.COMMANDS:
            return run(ops.COMMANDS[args.command](args, settings))
    except (SettingsError, OSError) as exc:
        console.print(f"[red]dodolens:[/] {exc}")
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
