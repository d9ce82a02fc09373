"""``dodolens upload`` against a running DodoLens: parallel chunks, an interruption, a resume that sends only
what is missing. The video is handed over as an in-memory file (memfd): no media byte touches the disk."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from dodolens.runner import Runtime
from dodolens.upload import ResumeState, upload_video
from streams.events import history
from tests.support.videos import make_video

CHUNKS = 8


@pytest.fixture(scope="module")
def video() -> bytes:
    """About 2 MB: eight 256 KiB chunks with the test settings."""
    return make_video(duration=4, width=640, height=360, bitrate=4_000_000, noise=3)


@pytest.fixture
def video_fd(video: bytes) -> Iterator[int]:
    fd = os.memfd_create("tour.mp4")
    view = memoryview(video)
    while view:
        view = view[os.write(fd, view):]
    try:
        yield fd
    finally:
        os.close(fd)


async def dodolens_upload(fd: int, *args: str, cache: Path) -> tuple[int, str, str]:
    """The real command in its own process; it reads the video from the inherited in-memory file."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dodolens.cli", "upload", f"/dev/fd/{fd}", *args, pass_fds=(fd,),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "XDG_CACHE_HOME": str(cache), "COLUMNS": "120"}, cwd=Path(__file__).parents[2])
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


async def chunk_events(rt: Runtime, sid: str) -> list[int]:
    return [e.data["index"] for e in await history(rt.redis, sid) if e.type == "chunk_received"]  # type: ignore[arg-type]


async def test_upload_sends_chunks_in_parallel_and_prints_the_inventory(runtime: Runtime, video: bytes, video_fd: int,
                                                                        tmp_path: Path) -> None:
    code, out, err = await dodolens_upload(video_fd, "--server", runtime.url, "--json", cache=tmp_path)
    assert code == 0, err
    report = orjson.loads(out)
    assert report["state"] == "done" and report["resumed"] is False
    assert report["sent_chunks"] == list(range(CHUNKS)) and report["repeated_chunks"] == 0
    assert report["result"]["video"]["size_bytes"] == len(video)
    assert report["result"]["analysis"]["status"] == "skipped"  # no model configured, and the result says so
    assert report["events"][-1] == "analysis_complete"
    assert sorted(await chunk_events(runtime, report["session_id"])) == list(range(CHUNKS))
    assert list(tmp_path.rglob("*.json")) == []  # the resume state is dropped once the outcome is known

    code, out, err = await dodolens_upload(video_fd, "--server", runtime.url, cache=tmp_path)
    assert code == 0, err
    assert "Inventory" in out and "analysis skipped" in out  # the table, for people


async def interrupt_after(runtime: Runtime, path: Path, state_file: Path, chunks: int) -> ResumeState:
    """Start an upload one chunk at a time and kill it once ``chunks`` chunks were acknowledged."""
    acknowledged = 0

    def on_progress(_sent: int, _total: int) -> None:
        nonlocal acknowledged
        acknowledged += 1
        if acknowledged == chunks:
            task.cancel()

    task = asyncio.create_task(upload_video(runtime.url, path, parallel=1, state_file=state_file,
                                            on_progress=on_progress))
    with pytest.raises(asyncio.CancelledError):
        await task
    saved = ResumeState.load(state_file)
    assert saved is not None and saved.server == runtime.url and saved.size == path.stat().st_size
    assert video_bytes_not_in(state_file)
    return saved


def video_bytes_not_in(state_file: Path) -> bool:
    return set(orjson.loads(state_file.read_bytes())) == {"server", "session_id", "token", "size"}


async def server_status(runtime: Runtime, saved: ResumeState) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=runtime.url) as http:
        response = await http.get(f"/sessions/{saved.session_id}", headers={"Authorization": f"Bearer {saved.token}"})
    return response.json()


@pytest.mark.parametrize("how", ["state file", "--resume flags"])
async def test_a_resumed_upload_sends_only_the_missing_chunks(runtime: Runtime, video: bytes, video_fd: int,
                                                              tmp_path: Path, how: str) -> None:
    state_file = tmp_path / "upload.json"
    saved = await interrupt_after(runtime, Path(f"/proc/self/fd/{video_fd}"), state_file, chunks=3)
    await asyncio.sleep(0.2)
    before = await server_status(runtime, saved)
    missing = before["missing_chunks"]
    assert before["state"] == "uploading" and 0 < len(missing) <= CHUNKS - 3

    if how == "state file":
        args = ["--server", runtime.url, "--state-file", str(state_file), "--json"]
    else:
        args = ["--server", runtime.url, "--resume", saved.session_id, "--token", saved.token, "--json", "--no-wait"]
    code, out, err = await dodolens_upload(video_fd, *args, cache=tmp_path)
    assert code == 0, err
    report = orjson.loads(out)
    assert report["session_id"] == saved.session_id and report["resumed"] is True
    assert report["sent_chunks"] == missing and report["repeated_chunks"] == 0
    assert sorted(await chunk_events(runtime, saved.session_id)) == list(range(CHUNKS))  # each index stored once
    if how == "state file":
        assert report["state"] == "done" and report["result"]["video"]["size_bytes"] == len(video)
        assert not state_file.exists()
    else:
        assert report["state"] in ("queued", "processing", "analyzing", "done") and report["result"] is None


async def test_an_unknown_session_fails_cleanly_unless_it_came_from_a_stale_state_file(
        runtime: Runtime, video: bytes, video_fd: int, tmp_path: Path) -> None:
    code, out, err = await dodolens_upload(video_fd, "--server", runtime.url, "--resume", "0" * 32,
                                           "--token", "1.abc", cache=tmp_path)
    assert code == 1 and out == ""
    assert "upload failed" in err and "bad_token" in err and "Traceback" not in err

    state_file = tmp_path / "stale.json"
    ResumeState(runtime.url, "0" * 32, "1.abc", len(video)).save(state_file)
    code, out, err = await dodolens_upload(video_fd, "--server", runtime.url, "--state-file", str(state_file),
                                           "--json", "--no-wait", cache=tmp_path)
    assert code == 0, err
    assert "starting a new one" in err
    report = orjson.loads(out)
    assert report["resumed"] is False and report["session_id"] != "0" * 32
    assert report["sent_chunks"] == list(range(CHUNKS))
