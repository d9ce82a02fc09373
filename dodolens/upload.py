"""``dodolens upload``: send a video file to a running gateway, resumably, and show the inventory.

The file is read chunk by chunk (never loaded whole, never copied). What a resume needs — the
session id and its token — goes to a small JSON state file (no media byte); after an interruption
the next run asks the server which chunks are missing (``GET /sessions/{sid}``) and sends only those.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import hashlib
import mimetypes
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from dodolens.client import (
    EventCallback,
    Outcome,
    ProgressCallback,
    UploadError,
    complete,
    create,
    follow_events,
    send_chunks,
    session_status,
)
from dodolens.failures import Exit, one_line
from dodolens.show import erase_hint, inventory_table
from schemas.lifecycle import UPLOADABLE, is_finished
from streams.threads import in_thread

STAGES = {"upload_complete": (1, "queued"), "processing_started": (2, "decoding"), "frames_extracted": (3, "analyzing"),
          "ai_analysis_progress": (3, "analyzing"), "analysis_complete": (4, "done")}
"""Event type -> (stage number out of 4, label), for the processing bar."""


class StaleSession(UploadError):
    """The session to resume is gone, failed, or belongs to another file: only a new upload can help."""


class FileSource:
    """A file seen as a read-only byte sequence: ``len`` and slices, each slice one ``pread``."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self.fd).st_size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, part: slice) -> bytes:
        start, stop, _ = part.indices(self.size)
        return os.pread(self.fd, max(0, stop - start), start)

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for start in range(0, self.size, 1 << 20):
            digest.update(self[start : start + (1 << 20)])
        return digest.hexdigest()

    def close(self) -> None:
        os.close(self.fd)


@dataclass
class ResumeState:
    """What the state file holds: enough to find the session again, nothing of the video."""

    server: str
    session_id: str
    token: str
    size: int

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(orjson.dumps(self.__dict__))

    @classmethod
    def load(cls, path: Path) -> "ResumeState | None":
        try:
            return cls(**orjson.loads(path.read_bytes()))
        except (OSError, orjson.JSONDecodeError, TypeError):
            return None


def default_state_file(server: str, video: Path) -> Path:
    """One state file per (server, file): ``$XDG_CACHE_HOME/dodolens/uploads/<fingerprint>.json``."""
    stat = video.stat()
    key = f"{server.rstrip('/')}|{video.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "dodolens" / "uploads" / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.json"


@dataclass
class UploadReport:
    outcome: Outcome
    state: str
    resumed: bool = False
    sent: list[int] = field(default_factory=list)
    repeated: int = 0
    """Chunks the server already had when they were sent (0 when a resume sends only what is missing)."""


async def upload_video(server: str, video: Path, *, parallel: int = 3, resume: ResumeState | None = None,
                       state_file: Path | None = None, wait: bool = True, on_progress: ProgressCallback | None = None,
                       on_event: EventCallback | None = None, on_resume: Callable[[int, int], None] | None = None,
                       timeout_s: float = 900.0) -> UploadReport:
    """Upload ``video`` (or the missing chunks of ``resume``), complete it, and follow its events.

    ``on_resume(bytes already on the server, total)`` is called once the starting point is known.
    """
    server = server.rstrip("/")
    source = FileSource(video)
    content_type = mimetypes.guess_type(video.name)[0] or "application/octet-stream"
    sent: list[int] = []
    repeated = 0

    def on_chunk(index: int, new: bool) -> None:
        nonlocal repeated
        sent.append(index)
        repeated += not new

    try:
        async with httpx.AsyncClient(base_url=server, timeout=60.0) as client:
            if resume is not None:
                try:
                    status = await session_status(client, resume.session_id, resume.token)
                except UploadError as exc:
                    raise StaleSession(exc.code, exc.message) from None
                if status["size"] != source.size:
                    raise StaleSession("size_mismatch", f"session {resume.session_id} is for a {status['size']}-byte "
                                                        f"file, {video.name} has {source.size} bytes")
                if status["state"] == "failed":
                    error = status.get("error") or {}
                    raise StaleSession(error.get("code", "failed"), error.get("message", "the session failed"))
                sid, token, chunk_size, state = resume.session_id, resume.token, status["chunk_size"], status["state"]
                missing = status["missing_chunks"] if state in UPLOADABLE else []
            else:
                session = await create(client, source.size, content_type)
                sid, token, chunk_size, state = session["session_id"], session["token"], session["chunk_size"], "created"
                missing = list(range(session["max_chunks"]))
                if state_file is not None:
                    ResumeState(server, sid, token, source.size).save(state_file)
            if on_resume:
                on_resume(source.size - sum(min(chunk_size, source.size - i * chunk_size) for i in missing), source.size)
            outcome = Outcome(sid, token)
            ready = asyncio.Event()
            follower = asyncio.create_task(follow_events(server, sid, token, on_event, outcome, ready))
            try:
                await asyncio.wait_for(ready.wait(), 10)
                if state in UPLOADABLE:
                    digest = asyncio.create_task(in_thread(source.sha256))
                    try:
                        await send_chunks(client, sid, token, source, chunk_size, missing, parallel, on_progress,
                                          on_chunk)
                    finally:
                        sha256 = await digest
                    response = await complete(client, sid, token, source, chunk_size, sha256, parallel,
                                              on_progress, on_chunk)
                    if response.status_code != 202:
                        body = response.json().get("error", {})
                        outcome.error = {"code": body.get("code", str(response.status_code)),
                                         "message": body.get("message", "")}
                        return UploadReport(outcome, "failed", resume is not None, sent, repeated)
                    state = response.json()["state"]
                if wait:
                    await asyncio.wait_for(asyncio.shield(follower), timeout_s)
                    state = "done" if outcome.result else ("failed" if outcome.error else state)
            finally:
                if not follower.done():
                    follower.cancel()
                    with contextlib.suppress(asyncio.CancelledError, UploadError):
                        await follower
        return UploadReport(outcome, state, resume is not None, sent, repeated)
    finally:
        source.close()


def add_arguments(_command: str, u: argparse.ArgumentParser) -> None:
    u.add_argument("video", type=Path)
    u.add_argument("--server", required=True, help="gateway base URL, e.g. http://127.0.0.1:8000")
    u.add_argument("--parallel", type=int, default=3, help="chunks in flight at once (default 3)")
    u.add_argument("--resume", metavar="SESSION_ID", help="resume this session (with --token)")
    u.add_argument("--token", help="the session token, for --resume")
    u.add_argument("--state-file", type=Path, help="where the resume state goes (default: under ~/.cache/dodolens)")
    u.add_argument("--fresh", action="store_true", help="ignore a saved state and start a new session")
    u.add_argument("--no-wait", action="store_true", help="stop once the upload is complete")
    u.add_argument("--json", action="store_true", help="print the outcome as JSON on stdout")


class DetailColumn(ProgressColumn):
    """Size, speed and time left for the upload bar; the step number for the processing bar."""

    def __init__(self) -> None:
        super().__init__()
        self.parts = (DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())

    def render(self, task: Task) -> Text:
        if task.fields.get("unit") != "bytes":
            return Text(f"step {int(task.completed)}/{int(task.total or 0)}")
        return Text(" ").join(column.render(task) for column in self.parts)  # type: ignore[misc]


def _stage_label(event: dict[str, Any]) -> str:
    label = STAGES[event["type"]][1]
    data = event.get("data", {})
    if event["type"] == "ai_analysis_progress" and "progress" in data:
        label += f" ({data.get('stage', '')} {float(data['progress']):.0%})"
    return label


async def command(args: argparse.Namespace, _settings: object) -> int:
    """Run ``dodolens upload``; exit 0 with an inventory (or a queued upload with --no-wait), 1 on failure,
    69 when the gateway does not answer."""
    console = Console(stderr=True)
    if not args.video.is_file():
        raise FileNotFoundError(errno.ENOENT, "no such file", str(args.video))
    if bool(args.resume) != bool(args.token):
        console.print("[red]dodolens upload:[/] --resume and --token go together")
        return 2
    state_file = args.state_file or default_state_file(args.server, args.video)
    resume = None
    if args.resume:
        resume = ResumeState(args.server, args.resume, args.token, args.video.stat().st_size)
    elif not args.fresh and (saved := ResumeState.load(state_file)) and saved.server == args.server.rstrip("/"):
        resume = saved
    quiet = args.json
    progress = Progress(SpinnerColumn(), TextColumn("{task.description:<10}"), BarColumn(), TaskProgressColumn(),
                        DetailColumn(), console=console, disable=quiet)
    upload_task = progress.add_task("upload", total=args.video.stat().st_size, unit="bytes")
    stage_task = progress.add_task("processing", total=4, visible=False)

    def on_event(event: dict[str, Any]) -> None:
        if event["type"] in STAGES:
            progress.update(stage_task, visible=True, completed=STAGES[event["type"]][0],
                            description=_stage_label(event))

    def on_resume(done: int, total: int) -> None:
        progress.update(upload_task, completed=done)
        if resume is not None and not quiet:
            console.print(f"resuming session {resume.session_id}: {total - done} of {total} bytes to send")

    async def run(resume: ResumeState | None) -> UploadReport:
        return await upload_video(args.server, args.video, parallel=args.parallel, resume=resume, state_file=state_file,
                                  wait=not args.no_wait, on_progress=lambda n, _t: progress.advance(upload_task, n),
                                  on_event=on_event, on_resume=on_resume)

    try:
        with progress:
            try:
                report = await run(resume)
            except StaleSession as exc:
                if args.resume:
                    raise
                console.print(f"[yellow]saved session unusable ({exc.message}); starting a new one[/]")
                progress.reset(upload_task)
                report = await run(None)
    except UploadError as exc:
        console.print(f"[red]upload failed[/] {exc.code}: {exc.message}")
        return 1
    except httpx.TransportError as exc:
        console.print(f"[red]cannot reach {args.server}:[/] {one_line(exc)}; run the same command again to resume")
        return Exit.UNAVAILABLE
    except httpx.HTTPError as exc:
        console.print(f"[red]upload failed:[/] {one_line(exc)}; run the same command again to resume")
        return 1
    outcome = report.outcome
    if is_finished(report.state) or outcome.result or outcome.error:
        state_file.unlink(missing_ok=True)
    if args.json:
        sys.stdout.write(orjson.dumps({
            "session_id": outcome.session_id, "token": outcome.token, "state": report.state,
            "resumed": report.resumed, "sent_chunks": sorted(report.sent), "repeated_chunks": report.repeated,
            "events": [e["type"] for e in outcome.events], "result": outcome.result, "error": outcome.error,
        }, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif outcome.result:
        Console().print(inventory_table(outcome.result))
    elif not outcome.error:
        console.print(f"session {outcome.session_id} is {report.state}")
    if outcome.session_id:
        console.print(erase_hint(outcome.session_id))
    if outcome.error:
        console.print(f"[red]error[/] {outcome.error.get('code')}: {outcome.error.get('message')}")
        return 1
    return 0


HANDLERS = {"upload": command}
INTERRUPTED = "interrupted: run the same command again to send only the missing chunks"
