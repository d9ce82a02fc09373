"""The vision settings, from the environment to the analyzer's configuration."""

from __future__ import annotations

import pytest

from dodolens.settings import Settings
from processors.analyzer import AnalyzerConfig
from processors.usage import DEFAULT_PRICES, Price
from streams.crypto import Keyring


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
