"""Airflow test set-up: a private AIRFLOW_HOME and metadata DB, migrated once per session.

Airflow reads its configuration when ``airflow`` is first imported, so the
environment is set here at import time — before any test module of this
package imports Airflow — not in a fixture (fixtures run after collection).
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_DAGS = REPO / "example_dags"

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="drift-airflow-home-"))
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)

if "airflow" in sys.modules and os.environ.get("AIRFLOW_HOME") != str(_AIRFLOW_HOME):
    # Too late to move AIRFLOW_HOME: the metadata DB would be the user's real one.
    raise RuntimeError(
        "airflow was imported before tests/airflow/conftest.py could isolate AIRFLOW_HOME; "
        "do not import airflow at module level in tests outside tests/airflow"
    )
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__CORE__DAGS_FOLDER": str(EXAMPLE_DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(_AIRFLOW_HOME / "plugins"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(_AIRFLOW_HOME / "logs"),
    }
)
for _name in list(os.environ):
    # A developer's own connections must not leak into the tests.
    if _name.startswith("AIRFLOW_CONN_"):
        del os.environ[_name]


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Create the metadata DB schema once per session (~6 s); return AIRFLOW_HOME."""
    from airflow.utils import db

    db.resetdb()
    return _AIRFLOW_HOME


@pytest.fixture(autouse=True)
def demo_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Give every test its own demo dir and ledger (the suite-wide conftest also isolates DRIFT_HOME)."""
    demo = tmp_path / "demo"
    monkeypatch.setenv("DRIFT_DEMO_DIR", str(demo))
    monkeypatch.setenv("DRIFT_LEDGER_PATH", str(tmp_path / "ledger.db"))
    return demo


def load_example_dag(file_name: str, dag_id: str) -> Any:
    """Import an example DAG file afresh, so it reads this test's environment."""
    path = EXAMPLE_DAGS / file_name
    spec = importlib.util.spec_from_file_location(f"drift_example_{path.stem}", path)
    assert spec and spec.loader
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag if module.dag.dag_id == dag_id else getattr(module, dag_id)


def register_dag(dag: Any) -> Any:
    """Write an ad-hoc DAG (defined in a test) to the metadata DB so ``dag.test()`` can run it.

    ``dag.test()`` looks the DAG up among parsed bundles; a test DAG lives in no
    bundle file, so it is written the way the DAG processor would write it.
    """
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()

    bag = SimpleNamespace(
        dags={dag.dag_id: dag}, import_errors={}, bundle_path=None, file_last_changed={}, dag_warnings=set()
    )
    sync_bag_to_db(bag, "dags-folder", None)  # type: ignore[arg-type]
    return dag


@pytest.fixture
def run_dag(airflow_db: Path) -> Iterator[Any]:
    """Run a DAG with ``dag.test()`` and return the finished DagRun."""

    def _run(dag: Any, **kwargs: Any) -> Any:
        return dag.test(**kwargs)

    yield _run
