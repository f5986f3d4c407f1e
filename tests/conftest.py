"""Suite-wide fixtures: every test gets its own ledger and never touches ~/.drift."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures.pg", "tests.fixtures.openai_server", "tests.fixtures.spark"]

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_drift_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "drift-home"
    home.mkdir()
    monkeypatch.setenv("DRIFT_LEDGER_PATH", str(home / "ledger.db"))
    monkeypatch.setenv("DRIFT_HOME", str(home))
    return home


@pytest.fixture
def ledger_path(_isolated_drift_home: Path) -> Path:
    return _isolated_drift_home / "ledger.db"
