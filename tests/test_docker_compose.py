"""docker-compose.yaml parses, runs Airflow 3, and defines every connection the example DAGs use.

No Docker engine here: the file is checked as data. Connection ids are read from
the loaded example DAGs (operator defaults included), so a DAG that starts using
a new connection fails this test until docker-compose.yaml defines it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yaml"
AIRFLOW_SERVICES = {"airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer"}  # fmt: skip


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _env(compose: dict[str, Any], service: str) -> dict[str, str]:
    env = compose["services"][service]["environment"]
    assert isinstance(env, dict), f"{service}: use the mapping form for environment"
    return {k: str(v) for k, v in env.items()}


def _compose_connections(compose: dict[str, Any], service: str) -> dict[str, dict[str, Any]]:
    prefix = "AIRFLOW_CONN_"
    env = _env(compose, service)
    return {k[len(prefix) :].lower(): json.loads(v) for k, v in env.items() if k.startswith(prefix)}


def _example_dag_conn_ids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """Every ``*conn_id`` attribute of every task in every example DAG, by DAG id."""
    if "airflow" not in sys.modules:  # run alone: keep Airflow away from ~/airflow
        monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    from airflow.sdk import DAG

    used: dict[str, set[str]] = {}
    for path in sorted((REPO / "example_dags").glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"compose_check_{path.stem}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for dag in (v for v in vars(module).values() if isinstance(v, DAG)):
            used[dag.dag_id] = {
                value
                for task in dag.tasks
                for name, value in vars(task).items()
                if name.endswith("conn_id") and isinstance(value, str) and value
            }
    return used


def test_compose_runs_airflow_3_qdrant_and_pgvector(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert AIRFLOW_SERVICES | {"postgres", "qdrant"} <= set(services)
    assert services["postgres"]["image"].startswith("pgvector/pgvector:pg17")
    assert "qdrant/qdrant" in services["qdrant"]["image"]
    commands = {name: services[name].get("command") for name in AIRFLOW_SERVICES - {"airflow-init"}}
    assert commands == {
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-triggerer": "triggerer",
    }
    for name in AIRFLOW_SERVICES:
        service = services[name]
        assert service["image"].split(":")[-1].startswith("3."), f"{name}: Airflow 3 image"
        env = _env(compose, name)
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/airflow/dags"
        assert "./example_dags:/opt/airflow/dags" in service["volumes"]
        assert ".:/opt/drift" in service["volumes"]
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        # The provider is installed from the mounted checkout in every running component.
        assert _env(compose, name)["_PIP_ADDITIONAL_REQUIREMENTS"] == "/opt/drift"
        assert compose["services"][name]["depends_on"]["airflow-init"]["condition"] == (
            "service_completed_successfully"
        )


def test_compose_defines_every_connection_the_example_dags_use(
    compose: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    used = _example_dag_conn_ids(tmp_path, monkeypatch)
    assert "drift_quickstart" in used
    for service in AIRFLOW_SERVICES - {"airflow-init"}:
        defined = set(_compose_connections(compose, service))
        for dag_id, conn_ids in used.items():
            assert conn_ids <= defined, f"{service}: {dag_id} uses {sorted(conn_ids - defined)}"


def test_compose_connections_resolve_with_the_provider_hooks(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if "airflow" not in sys.modules:
        monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    from airflow_provider_drift.hooks import DriftLedgerHook, DriftSinkHook

    conns = _compose_connections(compose, "airflow-scheduler")
    assert {k: v["conn_type"] for k, v in conns.items()} == {
        "qdrant_default": "qdrant",
        "pgvector_default": "postgres",
        "drift_ledger_default": "postgres",  # the PostgreSQL ledger: every worker shares it
        "spark_default": "spark",
    }
    for key, value in _env(compose, "airflow-scheduler").items():
        if key.startswith("AIRFLOW_CONN_"):
            monkeypatch.setenv(key, value)
    assert (
        DriftSinkHook("qdrant_default", collection="tickets").get_spec().uri == "qdrant://qdrant:6333/tickets"
    )
    assert (
        DriftSinkHook("pgvector_default", collection="tickets").get_spec().uri
        == "pgvector://drift:drift@postgres:5432/vectors/tickets"
    )
    assert DriftLedgerHook().get_path() == "postgresql://drift@postgres:5432/vectors?schema=drift_ledger"
    drift_home = _env(compose, "airflow-scheduler")["DRIFT_DEMO_DIR"]
    assert os.path.dirname(drift_home) == "/opt/airflow/drift"  # on the shared drift-data volume
