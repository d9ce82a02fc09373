"""The ``dodolens`` command: one table of subcommands, each defined by its own module.

Only the module of the subcommand being run is imported (its arguments included), so ``dodolens
--help`` loads no pipeline code and starts at once.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import gc
import logging
import sys
from collections.abc import Coroutine
from importlib import import_module
from typing import Any

COMMANDS: dict[str, tuple[str, str]] = {
    "analyze": ("dodolens.commands", "analyze a video end to end in this process (embedded Redis unless REDIS_URL)"),
    "up": ("dodolens.commands", "serve gateway + workers"),
    "gateway": ("dodolens.commands", "serve the gateway only"),
    "worker": ("dodolens.commands", "run decoder and analyzer workers only"),
    "doctor": ("dodolens.commands", "check the configured models and the result table, as up and worker do at start"),
    "erase": ("dodolens.commands",
              "erase a session everywhere (GDPR art. 17); exit 0 erased, 3 already erased, 4 unknown"),
    "upload": ("dodolens.upload", "upload a video to a running gateway (resumable) and show its inventory"),
    "lag": ("dodolens.ops", "consumer-group lag and status (OK / WARN / STALLED)"),
    "replay": ("dodolens.ops", "anonymized events of a time window, validated, as JSONL"),
    "report": ("dodolens.ops", "performance, cost and compliance over a day, week or month"),
}
"""Subcommand -> (module, help). The module defines ``add_arguments(command, parser)`` and
``HANDLERS[command]``, an ``async (args, settings) -> exit status``."""


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s own arguments are loaded (from its module)."""
    p = argparse.ArgumentParser(prog="dodolens", description="Ephemeral video analysis: video in, moving inventory out.",
                                epilog="exit statuses: 0 done, 1 failed, 2 bad usage, 66 input file unreadable, "
                                       "68 no Redis configured or found, 69 Redis unreachable, 71 system error, "
                                       "72 redis-server missing, 78 bad setting")
    sub = p.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    for name, (module, text) in COMMANDS.items():
        s = sub.add_parser(name, help=text, description=text)
        if name == command:
            import_module(module).add_arguments(name, s)
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
    atexit.unregister(gc.freeze)  # once, however often main runs in one process
    atexit.register(gc.freeze)  # spares the interpreter's last collection at exit, a walk over every object of the
    # pipeline's modules: commands close what they open before returning, and the process ending frees the rest
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((word for word in argv if not word.startswith("-")), None)
    args = parser(chosen if chosen in COMMANDS else None).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    module = import_module(COMMANDS[args.command][0])
    try:
        from dodolens.settings import Settings

        return run(module.HANDLERS[args.command](args, Settings.from_env()))
    except KeyboardInterrupt:
        print(f"\n{getattr(module, 'INTERRUPTED', 'interrupted')}", file=sys.stderr)
        return 130
    except Exception as exc:
        from dodolens.failures import failure_of

        failure = failure_of(exc)
        if failure is None:
            raise
        status, message = failure
        print(f"dodolens {args.command}: {message}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
