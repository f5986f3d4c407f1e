"""The new collections an open dual-write migration keeps in step with the old one.

While a dual-write migration is open (building, ready, cut over), every
change written to the old collection must reach the new one too, or the
cutover would serve a stale index. embed() and watch() look the targets up
here after writing the old collection and apply the same rows to each, with
the target's own model; see :mod:`.dual_write`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .ledger import Ledger
from .sinks.base import Distance, Sink

STRATEGY = "dual-write"


@dataclass(frozen=True)
class MigrationTarget:
    """A new collection that must follow every change of ``sink`` while its migration is open."""

    migration_id: str
    sink: str  # the old collection's ledger URI
    target_sink: str  # the new collection's ledger URI
    collection: str  # the new collection's name: open it with ``old_sink.with_collection(collection)``
    from_model: str
    to_model: str
    dim: int | None
    state: str
    distance: Distance = "cosine"


def open_migration_targets(sink: Sink | str, *, ledger: Ledger) -> list[MigrationTarget]:
    """The new collections that must receive every change written to ``sink`` (its ledger URI or handle)."""
    uri = sink.uri if isinstance(sink, Sink) else sink
    out = []
    for m in ledger.open_migrations(uri):
        if m["strategy"] != STRATEGY:
            continue
        d = m["details"]
        out.append(
            MigrationTarget(
                migration_id=m["migration_id"],
                sink=m["sink"],
                target_sink=m["target_sink"],
                collection=d["target_collection"],
                from_model=m["from_model"],
                to_model=m["to_model"],
                dim=d.get("dim_new"),
                state=m["state"],
                distance=d.get("distance") or "cosine",
            )
        )
    return out


def followed(target: MigrationTarget, *, kind: str, run_id: str, n_embedded: int) -> dict[str, Any]:
    """What a run reports about the run that applied its changes to a migration's new collection."""
    return {
        "migration_id": target.migration_id,
        "target_sink": target.target_sink,
        "model": target.to_model,
        "kind": kind,
        "run_id": run_id,
        "n_embedded": n_embedded,
    }
