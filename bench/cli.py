"""Issue 16: a CLI that starts at once, and a whole ``dodolens analyze`` process against ffmpeg.

``dodolens --help`` is compared with a bare ``python -c "import argparse"``; the whole ``dodolens
analyze`` process on the reference clip (interpreter, imports, embedded Redis, the video appended
into Redis in-process, decode, events, shutdown) with the design note's ffmpeg command on the same
file. Both pairs run interleaved, as separate processes, in the same run. One more run, printing its
events, splits the process into stages by the events' timestamps.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from bench.extraction import OUTPUT
from bench.harness import ROOT, Goal, median
from streams.embedded import EmbeddedRedis

HELP_TARGET = 10.0
HELP_ROUNDS = 15
ANALYZE_ROUNDS = 5
EVENT_LINE = re.compile(r"^(\d\d):(\d\d):(\d\d\.\d{3}) (\w+)", re.MULTILINE)
IMPORTS = "import dodolens.commands, dodolens.runner, dodolens.inprocess"


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, env=env, cwd=ROOT)
    return time.perf_counter() - started, done


def stage_times(command: list[str], env: dict[str, str]) -> str:
    """Where one ``dodolens analyze`` run spends its time, from the UTC timestamps of the events it prints (stderr)."""
    started = time.time()
    _wall, done = timed(command, env)
    ended = time.time()
    day = started - started % 86400
    at: dict[str, float] = {}
    for hours, minutes, seconds, kind in EVENT_LINE.findall(done.stderr.decode()):
        at.setdefault(kind, day + int(hours) * 3600 + int(minutes) * 60 + float(seconds))
    marks = ["session_created", "upload_complete", "frames_extracted", "analysis_complete"]
    if done.returncode != 0 or not all(kind in at for kind in marks):
        return f"not measured (exit {done.returncode}, events {sorted(at)})"
    names = ["start-up (interpreter, imports, Redis, workers)", "append into Redis",
             "decode left after the last chunk (it runs while they arrive)", "analysis (skipped: no model) and result",
             "shutdown"]
    edges = [started, *(at[kind] for kind in marks), ended]
    spans = ", ".join(f"{name} {end - start:.2f} s" for name, start, end in zip(names, edges, edges[1:]))
    return f"{spans} (whole {ended - started:.2f} s)"


def redis_start() -> float:
    started = time.perf_counter()
    EmbeddedRedis().start().stop()
    return time.perf_counter() - started


def help_goal() -> Goal:
    bare, ours = [], []
    for _ in range(HELP_ROUNDS):
        bare.append(timed([sys.executable, "-c", "import argparse"])[0])
        wall, done = timed([sys.executable, "-m", "dodolens.cli", "--help"])
        if done.returncode != 0:
            raise RuntimeError(f"dodolens --help failed: {done.stderr.decode()[-500:]}")
        ours.append(wall)
    ratio = median(ours) / median(bare)
    return Goal(
        "cli_help", "Issue 16: `dodolens --help` start-up",
        f"<= {HELP_TARGET:g}x a bare `python -c \"import argparse\"`",
        f"python -c \"import argparse\": median {median(bare) * 1000:.0f} ms",
        f"dodolens --help: median {median(ours) * 1000:.0f} ms", f"{ratio:.2f}x", ratio <= HELP_TARGET,
        [f"{HELP_ROUNDS} rounds, interleaved, each a fresh `{Path(sys.executable).name}` process",
         f"bare: {', '.join(f'{t * 1000:.0f}' for t in bare)} ms",
         f"dodolens --help (python -m dodolens.cli --help): {', '.join(f'{t * 1000:.0f}' for t in ours)} ms"],
    )


def analyze_goal(clip: bytes) -> Goal:
    binary = shutil.which("ffmpeg")
    title = "Issue 16: the whole `dodolens analyze` process vs the design note's ffmpeg extraction"
    target = "no slower than ffmpeg on the same file"
    if binary is None:
        return Goal("analyze_process", title, target, "ffmpeg not installed: `apt-get install -y ffmpeg`", "", "n/a", None)
    ours, theirs = [], []
    with tempfile.TemporaryDirectory(prefix="dodolens-bench-analyze-") as scratch:
        path = Path(scratch) / "reference.mp4"
        path.write_bytes(clip)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DODOLENS_", "OPENAI_", "AIRTABLE_", "REDIS_"))}
        env |= {"DODOLENS_RESULTS_DB": str(Path(scratch) / "results.sqlite3"), "XDG_RUNTIME_DIR": scratch,
                "PYTHONPATH": str(ROOT)}
        ffmpeg = [binary, "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(path), *OUTPUT]
        analyze = [sys.executable, "-m", "dodolens.cli", "analyze", str(path), "--json"]
        imports = [sys.executable, "-c", IMPORTS]
        timed(ffmpeg)
        imported = []
        for _ in range(ANALYZE_ROUNDS):
            theirs.append(timed(ffmpeg)[0])
            wall, done = timed(analyze, env)
            if done.returncode != 0:
                raise RuntimeError(f"dodolens analyze failed: {done.stderr.decode()[-1000:]}")
            ours.append(wall)
            imported.append(timed(imports, env)[0])
        outcome = orjson.loads(done.stdout)
        stages = stage_times(analyze[:-1], env)
    redis_starts = [redis_start() for _ in range(ANALYZE_ROUNDS)]
    ratio = median(ours) / median(theirs)
    floor = median(imported)
    return Goal(
        "analyze_process", title, target,
        f"ffmpeg: median {median(theirs):.2f} s", f"dodolens analyze: median {median(ours):.2f} s",
        f"{ratio:.2f}x the time", ratio <= 1.0,
        [f"clip: {len(clip) / 1e6:.1f} MB, 60 s 1920x1080 H.264 12 Mb/s + AAC, moov at the end, read from a temporary "
         f"file by both; {ANALYZE_ROUNDS} rounds, interleaved",
         f"dodolens analyze FILE --json (no model: analysis skipped; embedded Redis): runs "
         f"{', '.join(f'{t:.2f}' for t in ours)} s; last run's events: {', '.join(dict.fromkeys(outcome['events']))}",
         f"ffmpeg {' '.join(OUTPUT)}: runs {', '.join(f'{t:.2f}' for t in theirs)} s (8 JPEGs of the first 16 s, no audio)",
         f"of which start-up: a process that only imports what analyze runs (`python -c \"{IMPORTS}\"`) "
         f"takes a median {floor:.2f} s ({', '.join(f'{t:.2f}' for t in imported)} s), {floor / median(theirs):.2f}x "
         f"ffmpeg's whole run; the rest, {median(ours) - floor:.2f} s, is the append of {len(clip) / 1e6:.0f} MB into "
         "Redis, the decode, the events and the shutdown",
         f"by stage (one more run, printing its events; the events' timestamps split it): {stages}; an embedded "
         f"redis-server alone takes a median {median(redis_starts) * 1000:.0f} ms to answer, launched before the "
         "pipeline's imports so that it comes up meanwhile"],
    )
