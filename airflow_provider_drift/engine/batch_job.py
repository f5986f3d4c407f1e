"""A submitted Batch API job: the small record that travels, and the manifest that stays beside the ledger.

The record (:class:`BatchEmbedJob`) goes through XCom and the trigger, so it
holds ids and counts only. Which position of a batch holds which text — up to
50,000 content hashes a batch — is kept in a *manifest* file next to the
ledger (``<ledger dir>/batch-jobs/<run_id>.json``), which every task of a
deployment already sees. Once every batch is submitted the manifest also
stores the job, so a retried submitter can find and resume it; it is deleted
once the results are written.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .embed import DEFAULT_BATCH_SIZE
from .errors import ConfigError
from .ledger import Ledger

MANIFEST_FORMAT = 1


@dataclass
class BatchEmbedJob:
    """What :func:`complete_embed` needs, as JSON primitives (XCom, trigger kwargs, a file)."""

    run_id: str
    model: str
    sink: str
    source: str
    source_version: int | None
    #: the path/URI the source was read from; None for in-memory data (pass it again to complete)
    location: str | None
    source_kind: str
    text_col: str
    key_col: str
    filter: str | None = None
    dim: int | None = None
    distance: str = "cosine"
    dedup: bool = True
    store_text: bool = False
    on_invalid: str = "error"
    batch_size: int = DEFAULT_BATCH_SIZE
    batch_ids: list[str] = field(default_factory=list)
    manifest: str | None = None
    n_rows: int = 0
    n_rows_todo: int = 0
    n_texts_submitted: int = 0
    n_texts_reusable: int = 0
    estimated_tokens: int = 0
    estimated_cost_usd: float | None = 0.0
    #: who submitted (e.g. the Airflow task instance): a retry with the same key resumes this job
    resume_key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchEmbedJob:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def manifest_path(ledger: Ledger, run_id: str) -> Path:
    """Where a job's positions → content hashes are kept: beside the ledger every task already shares."""
    return ledger.local_dir / "batch-jobs" / f"{run_id}.json"


def find_open_job(ledger: Ledger, resume_key: str, *, submitted: bool = True) -> BatchEmbedJob | None:
    """The job ``resume_key`` submitted whose results are not written yet, if any.

    A manifest is marked ``submitted`` once every batch is submitted and is
    deleted once the results are written (or counted missing), so a submitted
    manifest is exactly "submitted, not yet completed" — also after a
    completion that failed to write, which a retry should finish rather than
    pay for again. ``submitted=False`` also finds a job whose submission was
    cut short (its batches so far), e.g. to cancel them.
    """
    for path in sorted(manifest_path(ledger, "x").parent.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # not ours, or unreadable: manifests are replaced atomically
        job = data.get("job") if data.get("format") == MANIFEST_FORMAT else None
        if job and job.get("resume_key") == resume_key and (data.get("submitted", True) or not submitted):
            return BatchEmbedJob.from_dict(job)
    return None


def read_manifest(job: BatchEmbedJob) -> dict[str, list[str]]:
    """Batch id → the content hash of each submitted position, in order."""
    if not job.batch_ids:
        return {}
    try:
        data = json.loads(Path(str(job.manifest)).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read the batch manifest {job.manifest!r} of run {job.run_id}: {exc}",
            hint="complete the job with the ledger it was submitted with (the manifest lives beside it); "
            "if it is lost, re-run the embed: written rows are skipped",
        ) from exc
    if data.get("format") != MANIFEST_FORMAT:
        raise ConfigError(
            f"batch manifest {job.manifest!r} has format {data.get('format')!r}, not {MANIFEST_FORMAT}",
            hint="complete the job with the drift version that submitted it",
        )
    batches: dict[str, list[str]] = data["batches"]
    return {b: batches[b] for b in job.batch_ids}


def write_manifest(
    path: Path, job: BatchEmbedJob, batches: dict[str, list[str]], *, submitted: bool = False
) -> None:
    """Write atomically after every submitted batch, so a crash never leaves a batch without its map.

    Every write stores the job with the batches so far; the last one marks it
    ``submitted``, so a retried submitter resumes only a complete submission.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    payload: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "run_id": job.run_id,
        "model": job.model,
        "batches": batches,
        "job": {**job.to_dict(), "batch_ids": list(batches)},
        "submitted": submitted,
    }
    tmp.write_text(json.dumps(payload), encoding="utf-8")
    os.replace(tmp, path)
