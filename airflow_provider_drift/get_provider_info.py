"""Describe this provider to Airflow: connection types, their form fields, hooks, operators, sensors.

Airflow reads this through the ``apache_airflow_provider`` entry point without
importing the hooks, so the connection form (``conn-fields``,
``ui-field-behaviour``) is declared here rather than in hook methods (the
Airflow ≥ 3.2 way). Keep this module import-free: it runs in every Airflow
process at start-up.
"""

from __future__ import annotations

from typing import Any

_INTEGRATION = "Drift"
LEDGER_PATH_EXAMPLE = "/opt/airflow/drift/ledger.db"


def get_provider_info() -> dict[str, Any]:
    """Return the provider metadata Airflow's ProvidersManager validates and loads."""
    from airflow_provider_drift import __version__

    return {
        "package-name": "airflow-provider-drift",
        "name": "Drift",
        "description": "The embedding lifecycle for vector search: embed once, refresh only what changed, "
        "migrate models safely, and audit cost and provenance in a ledger.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": _INTEGRATION,
                "external-doc-url": "https://pypi.org/project/airflow-provider-drift/",
                "tags": ["software"],
            }
        ],
        "hooks": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": [
                    "airflow_provider_drift.hooks.ledger",
                    "airflow_provider_drift.hooks.sink",
                    "airflow_provider_drift.hooks.embedding",
                ],
            }
        ],
        "operators": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": [
                    "airflow_provider_drift.operators.embed",
                    "airflow_provider_drift.operators.watch",
                    "airflow_provider_drift.operators.migrate",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": ["airflow_provider_drift.sensors.delta_cdf"],
            }
        ],
        "triggers": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": [
                    "airflow_provider_drift.triggers.delta_cdf",
                    "airflow_provider_drift.triggers.openai_batch",
                ],
            }
        ],
        "connection-types": [
            {
                "connection-type": "drift_ledger",
                "hook-class-name": "airflow_provider_drift.hooks.ledger.DriftLedgerHook",
                "hook-name": "Drift ledger",
                # Same shape as Airflow's own ``fs`` (File) connection: one path field, nothing else.
                # The hook also accepts the path in ``host`` (handy in AIRFLOW_CONN_* JSON).
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "schema", "login", "password", "port", "extra"],
                    "relabeling": {},
                    # Placeholders reach only the standard fields; the path field's hint is its example.
                    "placeholders": {"description": "The SQLite ledger shared by every drift task"},
                },
                "conn-fields": {
                    "path": {
                        "label": "Ledger path",
                        "description": "SQLite file of the drift ledger. Empty: $DRIFT_LEDGER_PATH, "
                        "else ~/.drift/ledger.db. Every task of a deployment must see the same file.",
                        # The UI shows a placeholder on a text field only when its schema has examples
                        # (offered as suggestions too); a default would fill the field in instead.
                        "schema": {"type": ["string", "null"], "examples": [LEDGER_PATH_EXAMPLE]},
                    }
                },
            }
        ],
    }
