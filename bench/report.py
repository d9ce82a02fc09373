"""BENCHMARKS.md: the machine, then each goal with its baseline, measured ratio and pass/fail."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import av
import redis

from bench.harness import Goal


def machine() -> list[str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "?")
    server = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()
    ffmpeg = subprocess.run(["sh", "-c", "ffmpeg -version 2>/dev/null | head -1"], capture_output=True, text=True).stdout
    memory = next((int(line.split()[1]) // 1024 // 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), 0)
    return [
        f"- nproc: {os.cpu_count()}; CPU: {cpu}; memory: {memory} GiB; {platform.system()} {platform.release()}",
        f"- Python {sys.version.split()[0]}; PyAV {av.__version__} (libavcodec "
        f"{'.'.join(map(str, av.library_versions['libavcodec']))}); redis-py {redis.__version__}; "
        f"{' '.join(server[:3]) if server else 'redis-server ?'}",
        f"- ffmpeg (baseline only): {ffmpeg.strip() or 'not installed'}",
    ]


def render(goals: list[Goal], started: datetime, loads: tuple[str, str], seconds: float) -> str:
    verdict = {True: "**pass**", False: "**FAIL**", None: "not run"}
    lines = [
        "# DodoLens benchmarks",
        "",
        f"Written by `python -m bench` on {started.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC in {seconds / 60:.1f} min. "
        "Each goal is measured as a ratio against a baseline run side by side in the same run, so the figures "
        "depend on the machine less than absolute numbers would; they are still single runs on a small, shared "
        "machine, so expect noise of tens of percent between runs.",
        "",
        "## Machine",
        "",
        *machine(),
        f"- load average (1/5/15 min) at start: {loads[0]}; at end: {loads[1]} (anything above ~0.5 means other "
        "processes competed for the 2 cores during the run)",
        "",
        "## Summary",
        "",
        "| goal | target | baseline | measured | ratio | result |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for g in goals:
        lines.append(f"| {g.title} | {g.target} | {g.baseline} | {g.measured} | {g.ratio} | {verdict[g.passed]} |")
    lines += ["", "## Details", ""]
    for g in goals:
        lines += [f"### {g.title}", "", f"Target: {g.target}. Result: {verdict[g.passed]} ({g.ratio}).", ""]
        lines += [f"- {d}" for d in g.details]
        lines.append("")
    lines += [
        "## How to run",
        "",
        "```sh",
        "apt-get install -y ffmpeg      # the extraction baseline only; DodoLens itself never runs ffmpeg",
        "python -m bench                # all goals, 3-5 min on 2 cores; writes BENCHMARKS.md",
        "python -m bench --only extraction,fanout --output /tmp/b.md",
        "```",
        "",
    ]
    return "\n".join(lines)
