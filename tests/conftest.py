"""Suite-wide fixtures: every test gets its own ledger and never touches ~/.drift."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.ci import in_ci

pytest_plugins = [
    "tests.fixtures.pg",
    "tests.fixtures.openai_server",
    "tests.fixtures.spark",
    "tests.fixtures.ledgers",
]

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_drift_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "drift-home"
    home.mkdir()
    monkeypatch.setenv("DRIFT_LEDGER_PATH", str(home / "ledger.db"))
    monkeypatch.setenv("DRIFT_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def _no_heartbeat_after_the_test() -> Iterator[None]:
    """A test that leaves a run open (a ledger unit test, a simulated crash) must not beat on after it:
    its ledger, or the Postgres schema holding it, is gone."""
    yield
    from airflow_provider_drift.engine.ledger.liveness import HEARTBEAT

    HEARTBEAT.forget()


@pytest.fixture
def ledger_path(_isolated_drift_home: Path) -> Path:
    return _isolated_drift_home / "ledger.db"


#: markers of tests that need an optional dependency: they skip locally when it is missing, never under CI
NEEDS_DEPENDENCY = ("local_model", "spark")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI, a skip of a test that needs an optional dependency is a failure."""
    outcome: Any = yield
    report = outcome.get_result()
    marker = next((m for m in NEEDS_DEPENDENCY if item.get_closest_marker(m)), None)
    unfetchable = item.get_closest_marker("unfetchable") is not None  # its skip reason is the statement
    if report.skipped and marker and in_ci() and not unfetchable and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        report.outcome = "failed"
        report.longrepr = f"CI=true and a '{marker}' test would skip: {reason}"
