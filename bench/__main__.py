"""``python -m bench [--only a,b] [--output BENCHMARKS.md]``: run the benchmarks, write the report."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from bench import clips, coverage, extraction, fanout, ingest, memory, pipeline, scaleout
from bench.harness import ROOT, Goal, load_average
from bench.report import render

ORDER = ("extraction", "memory", "ingest", "latency", "fanout", "scaleout", "progressive", "load", "coverage", "selection",
         "8k")


def _latency_pair() -> Callable[[], list[Goal]]:
    cache: list[Goal] = []

    def run() -> list[Goal]:
        if not cache:
            cache.extend(pipeline.latency_and_progressive(clips.reference()))
        return cache

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", default=",".join(ORDER), help=f"comma-separated goals among {', '.join(ORDER)}")
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"), help="where to write the report")
    args = parser.parse_args(argv)
    wanted = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(wanted) - set(ORDER)
    if unknown:
        parser.error(f"unknown goal(s): {', '.join(sorted(unknown))}")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    pair = _latency_pair()
    runners: dict[str, Callable[[], Goal]] = {
        "extraction": lambda: extraction.run(clips.reference()),
        "memory": lambda: memory.run(clips.reference()),
        "ingest": lambda: ingest.run(clips.reference()),
        "latency": lambda: pair()[0],
        "fanout": fanout.run,
        "scaleout": lambda: scaleout.run(clips.reference()),
        "progressive": lambda: pair()[1],
        "load": pipeline.load,
        "coverage": coverage.run,
        "selection": coverage.run_selection,
        "8k": coverage.run_8k,
    }
    started, began, load_before = datetime.now(timezone.utc), time.monotonic(), load_average()
    if any(name not in ("fanout", "load", "coverage", "selection", "8k") for name in wanted):
        print("encoding the 60 s 1080p reference clip...", file=sys.stderr, flush=True)
        clips.reference()
    goals = []
    for name in (n for n in ORDER if n in wanted):
        print(f"{name}...", file=sys.stderr, flush=True)
        goal = runners[name]()
        print(f"  {goal.measured} | {goal.ratio} | {'pass' if goal.passed else 'FAIL'}", file=sys.stderr, flush=True)
        goals.append(goal)
    report = render(goals, started, (load_before, load_average()), time.monotonic() - began)
    Path(args.output).write_text(report)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
