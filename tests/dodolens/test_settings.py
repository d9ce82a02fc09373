"""Settings: each declared once on the config that uses it, read from the environment, listed in the README."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dodolens.settings import Settings, SettingsError, markdown_table
from processors.analyzer import AnalyzerConfig
from processors.usage import DEFAULT_PRICES, Price
from streams.config import declared, settings_by_name
from streams.crypto import Keyring

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_lists_every_setting_as_declared() -> None:
    printed = subprocess.run([sys.executable, "-m", "dodolens.settings", "--markdown"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
    assert printed == markdown_table()
    assert printed in (ROOT / "README.md").read_text(), "README.md: paste `python -m dodolens.settings --markdown`"


def test_each_variable_and_each_name_is_declared_once() -> None:
    variables = [d.env for d in declared(Settings)]
    assert len(variables) == len(set(variables))
    assert len(settings_by_name(Settings)) == len(variables)


def test_only_the_variables_that_are_set_change_a_default() -> None:
    settings = Settings.from_env({"DODOLENS_CHUNK_SIZE": "65536", "DODOLENS_MAX_FRAMES": "5", "OPENAI_BASE_URL": "",
                                  "DODOLENS_WS_PING_INTERVAL": "2.5", "DODOLENS_SESSION_CHECK_INTERVAL": "0.5",
                                  "DODOLENS_REDIS_CLUSTER": "yes", "DODOLENS_ADMIN_TOKEN": "t"})
    assert settings.stream.chunk_size == 65536 and settings.worker.limits.max_frames == 5
    assert settings.gateway.ws_ping_interval_s == 2.5 and settings.gateway.session_check_interval_s == 0.5
    assert settings.redis_cluster and settings.gateway.admin_token == "t"
    assert settings.worker.analyzer.base_url is None and not settings.worker.analyzer.enabled
    default = Settings()
    assert settings.stream.max_size == default.stream.max_size
    assert settings.worker.analyzer.vision_model == default.worker.analyzer.vision_model


def test_the_master_secret_comes_from_the_variable_or_its_file(tmp_path: Path) -> None:
    secret = bytes(range(32))
    assert Settings.from_env({"DODOLENS_MASTER_SECRET": secret.hex()}).master_secret == secret
    (tmp_path / "secret").write_text(secret.hex() + "\n")
    assert Settings.from_env({"DODOLENS_MASTER_SECRET_FILE": str(tmp_path / "secret")}).master_secret == secret
    with pytest.raises(SettingsError, match="32 bytes"):
        Settings.from_env({"DODOLENS_MASTER_SECRET": "abcd"})


def test_overrides_reach_the_config_that_declares_the_setting() -> None:
    settings = Settings().with_overrides(admin_token="t", max_frames=3, chunk_ttl_s=1)
    assert settings.gateway.admin_token == "t" and settings.worker.limits.max_frames == 3
    assert settings.stream.chunk_ttl_s == 1
    with pytest.raises(TypeError, match="not a setting"):
        Settings().with_overrides(frames=3)


def test_a_secret_never_shows_in_a_repr() -> None:
    settings = Settings().with_overrides(master_secret=bytes(32), api_key="sk-hidden", admin_token="adm-hidden")
    assert "hidden" not in repr(settings) and repr(bytes(32)) not in repr(settings)


def test_each_worker_built_from_one_settings_gets_its_own_consumer_name() -> None:
    settings = Settings()
    stream = settings.stream_config(settings.keyring())
    assert settings.worker_config(stream).consumer != settings.worker_config(stream).consumer


# The vision settings, from the environment to the analyzer's configuration


def analyzer(env: dict[str, str]) -> AnalyzerConfig:
    settings = Settings.from_env(env)
    return settings.worker_config(settings.stream_config(Keyring.generate())).analyzer


def test_the_defaults_are_the_analyzers_own():
    assert analyzer({}) == AnalyzerConfig(base_url=None, api_key=None)


def test_every_vision_setting_reaches_the_analyzer():
    config = analyzer({
        "DODOLENS_VISION_MODEL": "gpt-5.4", "DODOLENS_OPENAI_TIMEOUT": "240", "DODOLENS_MAX_OUTPUT_TOKENS": "32000",
        "DODOLENS_REASONING_EFFORT": "medium", "DODOLENS_BATCH_FRAMES": "16", "DODOLENS_BATCH_CONCURRENCY": "6",
        "DODOLENS_BATCH_RETRIES": "2", "DODOLENS_PRICES": '{"gpt-5.4": [2, 0.2, 12]}',
    })
    assert (config.vision_model, config.timeout_s, config.max_output_tokens, config.reasoning_effort) == \
        ("gpt-5.4", 240.0, 32000, "medium")
    assert (config.batch_frames, config.batch_concurrency, config.batch_retries) == (16, 6, 2)
    assert config.prices["gpt-5.4"] == Price(2.0, 0.2, 12.0)
    assert config.prices["gpt-5.4-mini"] == DEFAULT_PRICES["gpt-5.4-mini"]


def test_an_empty_reasoning_effort_sends_none():
    assert analyzer({"DODOLENS_REASONING_EFFORT": ""}).reasoning_effort is None


@pytest.mark.parametrize("env", [{"DODOLENS_BATCH_FRAMES": "1"}, {"DODOLENS_REASONING_EFFORT": "extreme"},
                                 {"DODOLENS_PRICES": "cheap"}, {"DODOLENS_BATCH_CONCURRENCY": "0"}])
def test_a_vision_setting_that_cannot_work_is_refused_at_start_up(env):
    with pytest.raises(ValueError):
        analyzer(env)
