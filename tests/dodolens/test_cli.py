"""`dodolens analyze` is the main job: a phone video in, events in order and an inventory out."""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest
import redis as sync_redis

from streams.embedded import EmbeddedRedis, free_port
from tests.support.videos import make_phone_clip, make_video

EXPECTED_ORDER = ["session_created", "chunk_received", "upload_complete", "processing_started", "frames_extracted",
                  "analysis_complete"]


def dodolens(*args: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "dodolens.cli", *args], env=env, capture_output=True, timeout=timeout,
                          cwd=Path(__file__).resolve().parents[2])


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No DodoLens setting from the outside, and a runtime directory of the test's own (no `up` found)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DODOLENS_", "OPENAI_", "AIRTABLE_", "REDIS_"))}
    return {**env, "DODOLENS_RESULTS_DB": str(tmp_path / "results.sqlite3"), "XDG_RUNTIME_DIR": str(tmp_path / "run"),
            **extra}


def test_analyze_a_60s_1080p_phone_video_with_the_index_at_the_end(tmp_path: Path, redis_server: EmbeddedRedis) -> None:
    clip = make_phone_clip()
    assert clip.find(b"moov") > clip.find(b"mdat") > 0, "moov after mdat, as phones write it"
    video = tmp_path / "phone.mp4"
    video.write_bytes(clip)
    run = dodolens("analyze", str(video), "--json", env=clean_env(tmp_path, REDIS_URL=redis_server.url))
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    out = orjson.loads(run.stdout)
    events, result = out["events"], out["result"]
    first = [events.index(t) for t in EXPECTED_ORDER]
    assert first == sorted(first), events
    assert events[-1] == "analysis_complete"
    duration = result["video"]["duration_s"]
    assert abs(duration - 60.0) < 0.5 and result["video"]["width"] == 1920
    stamps = result["frames"]
    assert len(stamps) >= 6 and (max(stamps) - min(stamps)) >= 0.8 * duration
    assert result["analysis"]["status"] == "skipped"
    client = sync_redis.Redis.from_url(redis_server.url)
    left = [k.decode() for k in client.scan_iter(match=f"dodo:{{{out['session_id']}}}:*")]
    assert not [k for k in left if k.endswith((":chunks", ":frames", ":audio"))], left


def test_analyze_with_no_argument_uses_a_sample_and_an_embedded_redis(tmp_path: Path) -> None:
    run = dodolens("analyze", env=clean_env(tmp_path))
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    assert b"analysis_complete" in run.stderr
    assert b"Inventory" in run.stdout and b"analysis skipped" in run.stdout


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    run = dodolens("analyze", str(tmp_path / "nope.mp4"), env=clean_env(tmp_path))
    assert run.returncode == 66 and b"nope.mp4" in run.stderr


def test_erase_removes_a_sessions_keys_and_its_result(tmp_path: Path, redis_server: EmbeddedRedis) -> None:
    env = clean_env(tmp_path, REDIS_URL=redis_server.url, DODOLENS_MASTER_SECRET="ef" * 32)
    video = tmp_path / "clip.mp4"
    video.write_bytes(make_video(duration=2.0, audio=None))
    analyzed = dodolens("analyze", str(video), "--json", env=env)
    sid = orjson.loads(analyzed.stdout)["session_id"]
    client = sync_redis.Redis.from_url(redis_server.url)
    assert client.exists(f"dodo:{{{sid}}}:meta")
    with sqlite3.connect(tmp_path / "results.sqlite3") as db:
        assert db.execute("select count(*) from results where session_id = ?", (sid,)).fetchone() == (1,)
    erased = dodolens("erase", sid, env=env)
    assert erased.returncode == 0, erased.stderr.decode()
    receipt = orjson.loads(erased.stdout)
    assert receipt["session_id"] == sid and receipt["result_deleted"] is True and "meta" in receipt["redis_keys_deleted"]
    assert [k for k in client.scan_iter(match=f"dodo:{{{sid}}}:*") if not k.endswith(b":events")] == []
    with sqlite3.connect(tmp_path / "results.sqlite3") as db:
        assert db.execute("select count(*) from results where session_id = ?", (sid,)).fetchone() == (0,)
    again = dodolens("erase", sid, env=env)
    assert again.returncode == 3 and orjson.loads(again.stdout)["outcome"] == "already_erased"


def test_erase_tells_an_unknown_id_apart_and_writes_nothing(tmp_path: Path, redis_server: EmbeddedRedis) -> None:
    env = clean_env(tmp_path, REDIS_URL=redis_server.url, DODOLENS_MASTER_SECRET="ef" * 32)
    client = sync_redis.Redis.from_url(redis_server.url)
    client.set("unrelated", "x")
    before = {k: client.type(k) for k in client.scan_iter()}
    unknown = dodolens("erase", "0123456789abcdef" * 2, env=env)
    assert unknown.returncode == 4 and orjson.loads(unknown.stdout)["outcome"] == "unknown"
    assert {k: client.type(k) for k in client.scan_iter()} == before
    assert client.xlen("dodo:audit") == 0
    malformed = dodolens("erase", "not-a-session", env=env)
    assert malformed.returncode == 2 and b"not a session id" in malformed.stderr


def test_help_starts_without_loading_the_pipeline() -> None:
    shown = subprocess.run([sys.executable, "-c", "import sys\nfrom dodolens.cli import main\ntry:\n    main(['--help'])\n"
                            "except SystemExit:\n    print(sorted(m for m in ('openai', 'av', 'redis', 'rich', 'httpx',"
                            " 'pydantic', 'uvicorn', 'starlette') if m in sys.modules))"],
                           capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert "lag" in shown.stdout and "exit statuses" in shown.stdout
    assert shown.stdout.strip().splitlines()[-1] == "[]"


def one_line_failure(run: subprocess.CompletedProcess[bytes]) -> str:
    text = run.stderr.decode()
    assert "Traceback" not in text and len(text.strip().splitlines()) == 1, text
    return text


@pytest.mark.parametrize("args", [("lag",), ("report", "daily"), ("replay",), ("erase", "ab" * 16), ("up", "--port", "0")])
def test_an_unreachable_redis_is_one_line_and_status_69(tmp_path: Path, args: tuple[str, ...]) -> None:
    run = dodolens(*args, env=clean_env(tmp_path, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"), timeout=60)
    assert run.returncode == 69 and "cannot reach Redis" in one_line_failure(run)


@pytest.mark.parametrize("args", [("lag",), ("report", "daily"), ("replay",), ("erase", "ab" * 16)])
def test_ops_commands_with_no_redis_and_no_running_up_say_what_to_do(tmp_path: Path, args: tuple[str, ...]) -> None:
    run = dodolens(*args, env=clean_env(tmp_path), timeout=60)
    assert run.returncode == 68 and "dodolens up" in one_line_failure(run) and "REDIS_URL" in run.stderr.decode()


@pytest.mark.parametrize(("command", "setting", "value", "named"), [
    ("lag", "DODOLENS_MASTER_SECRET", "not-a-secret!", "neither hex nor base64"),
    ("up", "DODOLENS_MASTER_SECRET", "abcd", "at least 32 bytes"),
    ("analyze", "DODOLENS_MASTER_SECRET_FILE", "/nonexistent/secret", "DODOLENS_MASTER_SECRET_FILE"),
    ("worker", "DODOLENS_CHUNK_SIZE", "1MB", "DODOLENS_CHUNK_SIZE"),
])
def test_a_malformed_setting_is_one_line_and_status_78(tmp_path: Path, command: str, setting: str, value: str,
                                                        named: str) -> None:
    run = dodolens(command, env=clean_env(tmp_path, **{setting: value}), timeout=60)
    assert run.returncode == 78 and named in one_line_failure(run)


def test_a_gateway_port_in_use_is_one_line_and_status_71(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        run = dodolens("up", "--port", str(taken.getsockname()[1]), env=clean_env(tmp_path), timeout=60)
    assert run.returncode == 71 and "Address already in use" in one_line_failure(run)


def test_an_upload_to_a_server_that_does_not_answer_is_status_69(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(make_video(duration=1.0, audio=None))
    run = dodolens("upload", str(video), "--server", f"http://127.0.0.1:{free_port()}", "--json",
                   env=clean_env(tmp_path), timeout=60)
    assert run.returncode == 69 and "cannot reach" in run.stderr.decode() and "Traceback" not in run.stderr.decode()


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited with {process.returncode}"
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} never became ready")


def test_ops_commands_find_the_redis_of_a_running_up_as_the_readme_says(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    port = free_port()
    said = tmp_path / "up.log"
    up = subprocess.Popen([sys.executable, "-m", "dodolens.cli", "up", "--port", str(port)], env=env,
                          stdout=subprocess.DEVNULL, stderr=said.open("wb"), cwd=Path(__file__).resolve().parents[2])
    try:
        wait_ready(f"http://127.0.0.1:{port}", up)
        runtime_file = tmp_path / "run" / "dodolens" / "up.json"
        assert stat.S_IMODE(runtime_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(runtime_file.parent.stat().st_mode) == 0o700
        video = tmp_path / "clip.mp4"
        video.write_bytes(make_video(duration=2.0, audio=None))
        uploaded = dodolens("upload", str(video), "--server", f"http://127.0.0.1:{port}", "--json", env=env)
        assert uploaded.returncode == 0, uploaded.stderr.decode()
        sid = orjson.loads(uploaded.stdout)["session_id"]
        assert f"dodolens erase {sid}" in uploaded.stderr.decode()  # the user learns how to take it back

        lag = dodolens("lag", "--json", "--samples", "1", env=env)
        assert lag.returncode == 0, lag.stderr.decode()
        assert {row["group"] for row in orjson.loads(lag.stdout)} >= {"decoders", "analyzers"}
        report = dodolens("report", "daily", "--json", env=env)
        assert report.returncode == 0 and orjson.loads(report.stdout)["performance"]["analyses_completed"] == 1
        replay = dodolens("replay", "--since", "1h", "--type", "analysis_complete", env=env)
        assert replay.returncode == 0 and len(replay.stdout.splitlines()) == 1
        exported = re.search(r"export REDIS_URL=(\S+)", said.read_text())
        assert exported is not None, said.read_text()
        erased = dodolens("erase", sid, env={**env, "REDIS_URL": exported[1]})  # the line `up` prints works too
        assert erased.returncode == 0, erased.stderr.decode()
        assert orjson.loads(erased.stdout)["result_deleted"] is True  # found the results of `up` too
    finally:
        up.terminate()
        up.wait(30)
    assert not runtime_file.exists()
    after = dodolens("lag", env=env)
    assert after.returncode == 68


def test_the_inventory_table_says_what_the_analysis_sent_and_cost() -> None:
    from rich.console import Console

    from dodolens.show import inventory_table

    result = {"video": {"duration_s": 61.0}, "frames": [0.0, 1.0],
              "analysis": {"frames_sent": 27, "input_tokens": 31_234, "output_tokens": 2_345, "cost_usd": 0.0281},
              "inventory": {"rooms": [], "total_volume_m3": 0.0, "total_items": 0}}
    console = Console(width=100, record=True)
    console.print(inventory_table(result))
    text = " ".join(console.export_text().split())
    assert "27 frames sent, 31234 input and 2345 output tokens, about $0.0281" in text
