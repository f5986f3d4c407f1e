"""Run records: what one embed, watch or migrate did, as plain JSON-safe data.

They are returned by the engine, pushed to XCom by the operators, printed by
the CLI and stored in the ledger's ``runs.details`` column, so every field is a
JSON primitive. ``cost_usd`` is ``None`` when the price of the model is unknown
(never a silent guess).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Record:
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class EmbedRun(_Record):
    """Counts of one embed: every row read is deduped, written, or rejected."""

    run_id: str
    model: str = ""
    sink: str = ""
    source: str = ""
    source_version: int | None = None
    n_rows_processed: int = 0
    n_rows_deduped: int = 0
    n_embedded: int = 0
    n_reused: int = 0
    n_written: int = 0
    n_deleted: int = 0
    n_skipped: int = 0
    tokens: int = 0
    cost_usd: float | None = 0.0
    duration_s: float = 0.0
    dry_run: bool = False
    status: str = "success"
    #: which runner did the per-row work: "local" (this process) or "spark" (the executors)
    runner: str = "local"
    #: for runner "spark": partitions, executor_tasks, retried_tasks, known_via, known_points
    spark: dict[str, Any] | None = None
    #: the runs that applied the same rows to open dual-write migrations' new collections
    migration_runs: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class WatchRun(_Record):
    """Counts of one change-feed refresh over versions (since_version, to_version]."""

    run_id: str
    model: str = ""
    sink: str = ""
    source: str = ""
    since_version: int | None = None
    to_version: int | None = None
    n_changes: int = 0
    n_inserted: int = 0
    n_updated: int = 0
    n_deleted: int = 0
    n_unchanged: int = 0
    n_stale_skipped: int = 0
    n_embedded: int = 0
    n_reused: int = 0
    n_written: int = 0
    tokens: int = 0
    cost_usd: float | None = 0.0
    duration_s: float = 0.0
    mode: str = "watermark"
    status: str = "success"
    #: which runner did the per-row work: "local" (this process) or "spark" (the executors)
    runner: str = "local"
    #: for runner "spark": partitions, executor_tasks, retried_tasks
    spark: dict[str, Any] | None = None
    #: the runs that applied the same changes to open dual-write migrations' new collections
    migration_runs: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class MigrateRun(_Record):
    """Outcome of one migration step; ``passed`` is the quality gate's verdict."""

    run_id: str
    strategy: str = ""
    from_model: str = ""
    to_model: str = ""
    sink: str = ""
    target_sink: str | None = None
    n_points: int = 0
    n_embedded: int = 0
    arr: float | None = None
    overlap: float | None = None
    adapter_kind: str | None = None
    adapter_path: str | None = None
    threshold: float | None = None
    passed: bool | None = None
    tokens: int = 0
    cost_usd: float | None = 0.0
    duration_s: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    status: str = "success"
