"""Golden values of everything drift stores: changing one orphans every vector and record already written.

If a test here fails, a stored format changed. That is only ever right together
with a new scheme version (``identity.HASH_SCHEME`` / ``POINT_ID_SCHEME``, the
ledger's ``SCHEMA_VERSION`` with a forward migration) — then update the value
here in the same change, and say so in the release notes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from airflow_provider_drift.engine import identity
from airflow_provider_drift.engine.identity import content_hash, content_hashes, point_id, point_ids
from airflow_provider_drift.engine.ledger import SCHEMA_VERSION, Ledger
from airflow_provider_drift.engine.providers.shadow import ShadowProvider

TEXT = "Reset my password, please."


def test_point_id_of_a_known_source_and_key() -> None:
    assert (identity.POINT_ID_SCHEME, identity.HASH_SCHEME) == ("uuid5-v1", "sha256-v1")
    expected = "14413442-63ba-5426-a580-62a3c3ee0749"
    assert point_id("delta:///lake/tickets", "42") == expected
    assert point_ids("delta:///lake/tickets", ["42", "43"])[0] == expected  # the fast path agrees
    assert point_id("delta:///lake/tickets", identity.key_to_str(42.0)) == expected  # 42, 42.0 and "42"
    assert point_ids("delta:///lake/tickets", ["43"]) == [point_id("delta:///lake/tickets", "43")]


def test_content_hash_of_a_known_text() -> None:
    expected = "2d405e27cbd02c6297c349c6d1d5c2a23d8eb51723c3a1020ce7bc61edc72a11"
    assert content_hash(TEXT) == expected
    assert content_hashes([TEXT, TEXT + " "]) == [expected, content_hash(TEXT + " ")]


@pytest.mark.parametrize(
    ("model", "dim", "first"),
    [
        (
            "openai/text-embedding-3-small",
            1536,
            [0.013932456262409687, -0.03764829412102699, -0.02401646226644516, -0.023318564519286156],
        ),
        (
            "local/all-MiniLM-L6-v2",
            384,
            [0.056521687656641006, -0.06788340210914612, 0.056923653930425644, -0.04329780861735344],
        ),
    ],
)
def test_shadow_vector_of_a_known_text(model: str, dim: int, first: list[float]) -> None:
    """Shadow vectors stand in for a model in stored collections: the same text must give the same vector."""
    got = ShadowProvider(model).embed([TEXT])
    assert got.vectors.shape == (1, dim) and got.vectors.dtype == np.float32
    np.testing.assert_allclose(got.vectors[0][:4], first, rtol=1e-6, atol=0)


def test_ledger_schema_version_and_tables(tmp_path: Path) -> None:
    """A new column or table without a new schema version (and its migration) fails here."""
    assert SCHEMA_VERSION == 3
    with Ledger(tmp_path / "ledger.db") as led:
        tables = {
            str(t["name"]): [str(c["name"]) for c in led._db.query(f"PRAGMA table_info({t['name']})")]
            for t in led._db.query("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
        }
        version = led._db.query("PRAGMA user_version")[0][0]
    assert version == SCHEMA_VERSION
    assert tables == {
        "adapters": [
            "adapter_id", "path", "sha256", "kind", "from_model", "to_model", "sink", "d_new", "d_old",
            "arr", "overlap", "threshold", "passed", "run_id", "created_at", "details",
        ],
        "erasures": [
            "erasure_id", "source", "source_key", "sink", "point_id", "requested_at", "verified_at",
            "verified", "proof",
        ],
        "leases": ["source", "sink", "holder", "host", "pid", "acquired_at", "heartbeat_at"],
        "migrations": [
            "migration_id", "strategy", "from_model", "to_model", "sink", "target_sink", "state",
            "created_at", "updated_at", "details",
        ],
        "runs": [
            "run_id", "kind", "status", "model", "sink", "source", "started_at", "finished_at",
            "duration_s", "n_rows", "n_deduped", "n_embedded", "n_written", "n_deleted", "tokens",
            "cost_usd", "cost_known", "error", "dag_id", "task_id", "airflow_run_id", "try_number",
            "details", "host", "pid", "heartbeat_at",
        ],
        "sinks": [
            "sink", "model", "dim", "distance", "created_at", "updated_at", "point_id_scheme",
            "vector_scheme",
        ],
        "vectors": [
            "sink", "point_id", "source", "source_key", "content_hash", "hash_scheme", "model", "run_id",
            "source_version", "created_at", "updated_at", "deleted_at", "deleted_run_id", "deleted_version",
            "pending_run",
        ],
        "watermarks": ["source", "sink", "version", "run_id", "updated_at"],
    }  # fmt: skip
