"""`dodolens analyze` is the main job: a phone video in, events in order and an inventory out."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson
import redis as sync_redis

from streams.embedded import EmbeddedRedis
from tests.support.videos import make_phone_clip, make_video

EXPECTED_ORDER = ["session_created", "chunk_received", "upload_complete", "processing_started", "frames_extracted",
                  "analysis_complete"]


def dodolens(*args: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "dodolens.cli", *args], env=env, capture_output=True, timeout=timeout,
                          cwd=Path(__file__).resolve().parents[2])


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DODOLENS_", "OPENAI_", "AIRTABLE_", "REDIS_"))}
    return {**env, "DODOLENS_RESULTS_DB": str(tmp_path / "results.sqlite3"), **extra}


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
    assert run.returncode == 2 and b"nope.mp4" in run.stderr


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
    again = orjson.loads(dodolens("erase", sid, env=env).stdout)
    assert again["result_deleted"] is False


def test_the_inventory_table_says_what_the_analysis_sent_and_cost() -> None:
    from rich.console import Console

    from dodolens.cli import inventory_table

    result = {"video": {"duration_s": 61.0}, "frames": [0.0, 1.0],
              "analysis": {"frames_sent": 27, "input_tokens": 31_234, "output_tokens": 2_345, "cost_usd": 0.0281},
              "inventory": {"rooms": [], "total_volume_m3": 0.0, "total_items": 0}}
    console = Console(width=100, record=True)
    console.print(inventory_table(result))
    text = " ".join(console.export_text().split())
    assert "27 frames sent, 31234 input and 2345 output tokens, about $0.0281" in text
