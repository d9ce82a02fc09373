"""The operators' and analysts' commands: ``dodolens lag``, ``replay`` and ``report``.

They talk to the Redis that DodoLens runs on (``REDIS_URL``, else that of a running ``dodolens up``:
``dodolens.local``); the work is done in ``streams``, this module only reads options and prints
(rich tables for people, JSON for scripts).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import orjson
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from dodolens.local import with_local_up
from dodolens.settings import Settings
from schemas.events import EventType
from streams.connection import Redis, connect
from streams.lag import STALL_AFTER_S, GroupSample, LagTracker, Status, Verdict, as_dict, read_samples
from streams.replay import parse_time, replay, to_jsonl, to_stream
from streams.report import PERIODS, STAGES, build_report

err = Console(stderr=True)
STATUS_STYLE = {Status.OK: "green", Status.WARN: "yellow", Status.STALLED: "bold red"}


@contextlib.asynccontextmanager
async def redis_of(settings: Settings, command: str) -> AsyncIterator[Redis]:
    settings = with_local_up(settings, command)
    r = connect(settings.redis_url or "", cluster=settings.redis_cluster)
    try:
        yield r
    finally:
        await r.aclose()


def _moment(text: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    """The arguments of ``lag``, ``replay`` or ``report``."""
    if command == "lag":
        parser.add_argument("--json", action="store_true", help="print JSON (one document per refresh with --watch)")
        parser.add_argument("--watch", action="store_true", help="refresh until interrupted")
        parser.add_argument("--interval", type=float, default=2.0, help="seconds between samples (default 2)")
        parser.add_argument("--samples", type=int, default=3, help="samples judged without --watch (default 3)")
        parser.add_argument("--window", type=int, default=20, help="samples judged with --watch (default 20)")
        parser.add_argument("--stall-after", type=float, default=STALL_AFTER_S, metavar="SECONDS",
                            help=f"nothing read for this long with a backlog is STALLED, not WARN (default {STALL_AFTER_S:.0f})")
        parser.add_argument("--count", type=int, default=0, help="with --watch: stop after this many refreshes")
    elif command == "replay":
        parser.add_argument("--since", type=_moment, help="ISO-8601 or relative (2h, 7d); default: the oldest kept")
        parser.add_argument("--until", type=_moment, help="ISO-8601 or relative; default: now")
        parser.add_argument("--type", action="append", choices=[t.value for t in EventType],
                            help="keep this type (repeatable)")
        where = parser.add_mutually_exclusive_group()
        where.add_argument("--out", help="write JSONL to this file instead of stdout")
        where.add_argument("--publish", metavar="STREAM", help="re-publish into this Redis stream instead")
    elif command == "report":
        parser.add_argument("period", choices=list(PERIODS))
        parser.add_argument("--json", action="store_true")


def stdout_console() -> Console:
    """Tables for people: the terminal's width, or a wide one when piped (no wrapped stream names)."""
    return Console(width=None if sys.stdout.isatty() else 160)


def lag_table(rows: Sequence[tuple[GroupSample, Verdict]]) -> Table:
    table = Table(title="Consumer groups")
    for name in ("stream", "group", "consumers", "pending", "lag", "oldest pending idle", "status", "why"):
        table.add_column(name, justify="right" if name in ("consumers", "pending", "lag", "oldest pending idle") else "left",
                         no_wrap=name != "why")
    for s, v in rows:
        idle = "–" if s.oldest_pending_idle_ms is None else f"{s.oldest_pending_idle_ms / 1000:.1f} s"
        table.add_row(s.stream, s.group, str(s.consumers), str(s.pending), "?" if s.lag is None else str(s.lag), idle,
                      f"[{STATUS_STYLE[v.status]}]{v.status}[/]", v.reason)
    if not rows:
        table.caption = "no consumer group yet: no worker has started"
    return table


def _json(rows: Sequence[tuple[GroupSample, Verdict]]) -> str:
    return orjson.dumps([as_dict(s, v) for s, v in rows]).decode()


async def lag(args: argparse.Namespace, settings: Settings) -> int:
    """Exit status 1 when a group is STALLED, so the command doubles as a check."""
    tracker = LagTracker(window=args.window if args.watch else max(1, args.samples), min_interval_s=0.0,
                         stall_after_s=args.stall_after)
    async with redis_of(settings, "lag") as r:
        if not args.watch:
            for i in range(max(1, args.samples)):
                if i:
                    await asyncio.sleep(args.interval)
                tracker.add(await read_samples(r))
            rows = tracker.verdicts()
            if args.json:
                sys.stdout.write(_json(rows) + "\n")
            else:
                stdout_console().print(lag_table(rows))
            return 1 if any(v.status == Status.STALLED for _s, v in rows) else 0
        return await watch(r, tracker, args)


async def watch(r: Redis, tracker: LagTracker, args: argparse.Namespace) -> int:
    """Refresh every ``interval`` until ``count`` refreshes or Ctrl-C (which ends it quietly)."""
    refreshes = 0
    screen = contextlib.nullcontext() if args.json else Live(Group(), console=stdout_console(), auto_refresh=False)
    with screen as live:
        while True:
            tracker.add(await read_samples(r))
            rows = tracker.verdicts()
            if live is None:
                sys.stdout.write(_json(rows) + "\n")
                sys.stdout.flush()
            else:
                live.update(lag_table(rows), refresh=True)
            refreshes += 1
            if args.count and refreshes >= args.count:
                return 0
            try:
                await asyncio.sleep(args.interval)
            except asyncio.CancelledError:
                return 0


async def replay_command(args: argparse.Namespace, settings: Settings) -> int:
    """Exit status 1 when some records failed validation (they are listed on stderr, not written)."""
    async with redis_of(settings, "replay") as r:
        with contextlib.ExitStack() as stack:
            if args.publish:
                try:
                    emit = to_stream(r, args.publish)
                except ValueError as exc:
                    err.print(f"[red]dodolens replay:[/] {exc}")
                    return 2
            else:
                out = stack.enter_context(open(args.out, "w", encoding="utf-8")) if args.out else sys.stdout
                emit = to_jsonl(out)
            stats = await replay(r, emit, since=args.since, until=args.until, types=set(args.type or ()))
    target = f"into {args.publish}" if args.publish else f"to {args.out}" if args.out else ""
    err.print(f"replayed {stats.emitted} of {stats.read} record(s) {target}".rstrip())
    for entry_id, why in stats.invalid[:20]:
        err.print(f"[yellow]invalid[/] {entry_id}: {why}")
    if len(stats.invalid) > 20:
        err.print(f"… and {len(stats.invalid) - 20} more invalid record(s)")
    return 1 if stats.invalid else 0


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _figures(title: str, rows: Sequence[tuple[str, Any]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left", min_width=44)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, str(value))
    return table


def report_tables(rep: dict[str, Any]) -> list[Table]:
    perf, cost, comp = rep["performance"], rep["cost"], rep["compliance"]
    rate = perf["error_rate"]
    performance = _figures("Performance", [
        ("sessions", perf["sessions"]),
        ("uploads completed", perf["uploads_completed"]),
        ("analyses completed", perf["analyses_completed"]),
        ("error rate", "–" if rate["rate"] is None else f"{rate['rate']:.1%} ({rate['failed']} of {rate['ended']})"),
        *((f"errors: {code}", n) for code, n in perf["errors_by_code"].items()),
    ])
    if rep["records"]["invalid_events"]:
        performance.caption = f"{rep['records']['invalid_events']} invalid analytics record(s) left out"
    durations = Table(title="Durations (s)", title_justify="left", min_width=44)
    for name in ("stage", "sessions", "p50", "p95"):
        durations.add_column(name, justify="left" if name == "stage" else "right")
    for stage in STAGES:
        d = perf["durations_s"][stage]
        durations.add_row(stage, str(d["count"]), _seconds(d["p50"]), _seconds(d["p95"]))
    cost_table = _figures("Cost", [
        ("model tokens", cost["model_tokens"]),
        *((f"tokens: {model}", n) for model, n in cost["tokens_by_model"].items()),
        ("tokens per analysis", "–" if cost["tokens_per_analysis"] is None else cost["tokens_per_analysis"]),
        ("frames sent", cost["frames_sent"]),
        ("vision input / output tokens", f"{cost['input_tokens']} / {cost['output_tokens']}"),
        ("input: image / text tokens", f"{cost['image_tokens']} / {cost['text_tokens']}"),
        ("estimated cost", f"${cost['estimated_usd']:.4f}"),
        *((f"estimated: {model}", f"${usd:.4f}") for model, usd in cost["estimated_usd_by_model"].items()),
        ("estimated per analysis", "–" if cost["estimated_usd_per_analysis"] is None
         else f"${cost['estimated_usd_per_analysis']:.4f}"),
        *((("analyses without a price", cost["unpriced_analyses"]),) if cost["unpriced_analyses"] else ()),
    ])
    compliance = _figures("Compliance", [
        ("erasures (GDPR art. 17)", comp["erasures"]),
        ("results erased", comp["results_erased"]),
        ("TTL expiries", comp["ttl_expiries"]),
        ("failed cleanups", comp["failed_cleanups"]),
        ("media accesses", comp["media_accesses"]),
    ])
    return [performance, durations, cost_table, compliance]


async def report_command(args: argparse.Namespace, settings: Settings) -> int:
    async with redis_of(settings, "report") as r:
        rep = await build_report(r, args.period)
    if args.json:
        sys.stdout.write(orjson.dumps(rep, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        out = stdout_console()
        out.print(f"[bold]DodoLens {rep['period']} report[/]  {rep['from'][:16]} → {rep['until'][:16]} UTC")
        for table in report_tables(rep):
            out.print(table)
    return 0


HANDLERS = {"lag": lag, "replay": replay_command, "report": report_command}
