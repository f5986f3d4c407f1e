"""Write batches on two background threads — sink, then ledger — while the next batch is prepared.

Why threads: reading, hashing and embedding the next batch, writing the sink
and recording provenance are independent. The sink engines hold the GIL for
much of an upsert, but SQLite releases it for its B-tree and WAL work, so
the ledger stage runs on the other core beside the sink stage instead of
after it.

Why the ledger stage coalesces: provenance keys are random UUIDs, so each
transaction rewrites index pages all over the file; a larger transaction
shares those pages among more rows. When the ledger falls behind, it takes
every queued batch (up to ``_MAX_LEDGER_ROWS``) into one transaction, so the
pipeline tunes itself to the slower stage.

Ordering and safety: a batch is recorded in the ledger only after the sink
accepted it, in submission order ("sink first": a crash between the two
leaves points the ledger does not know, which a re-run rewrites). On an
error in either stage, every batch the sink already accepted is still
recorded before ``close()`` raises; the batches embedded but not accepted
(the failed one, up to ``depth`` queued behind it and the one being handed
over: ``depth + 2``) are not written and their texts are paid again by the
re-run — the price of overlap. A hard kill (SIGKILL, OOM) can lose the
ledger records of rows the sink holds — the transaction in progress (up to
``_MAX_LEDGER_ROWS``) and the batches queued for the ledger (up to
``_LEDGER_QUEUE``): ~130k rows at the default batch size. The re-run embeds
those again.

Invalidate before overwrite. "Sink first" alone is not enough for a point
the ledger already knows: if the sink overwrites text A's vector with text
B's and the process dies before the ledger row changes, the ledger still
claims A; when the source returns to A, dedup (and watch's "unchanged"
test) would trust that claim and B's vector would stay for good. So before
the sink stage writes a batch, it marks (``vectors.pending_run``, one
transaction) the points the ledger records as live with *another* text or
model. A marked row claims nothing: it is stale to every planner, never a
source of reused vectors, and the ledger stage clears the mark when it
records the new text. After a kill, the next writer on the sink settles the
marks of runs that are no longer running against the sink's payload, which
is stored with the vector in one point and so says which text the vector is
of (a payload without a hash or model counts as unknown: the point is
rewritten). Only a read decides whether a batch needs a mark, so a fresh
embed (new points) and a no-change re-run (nothing written) pay no extra
write transaction; an update pays one small one per batch, taken before the
sink write so a ledger locked by another writer holds the sink back instead
of letting it run ahead. Deletes (watch, ``delete_missing``) mark the same
way before the sink deletes (:meth:`Ledger.mark_pending` without hashes), and so does an erasure.

Texts of batches not yet recorded are served from ``pending`` so a text
repeated in a later batch is paid for once.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .ledger import Ledger, Observed, Upsert
from .sinks.base import PAYLOAD_HASH, PAYLOAD_MODEL, PointBatch, Sink

_MAX_LEDGER_ROWS = 65_536
_LEDGER_QUEUE = 16  # batches accepted by the sink, waiting for the ledger
_NO_POINTS = PointBatch([], np.empty((0, 0), dtype=np.float32), [])


@dataclass
class WriteJob:
    points: PointBatch
    provenance: list[Upsert]
    model: str
    run_id: str
    #: content hash → vector, for texts first embedded in this batch
    new_vectors: dict[str, np.ndarray] = field(default_factory=dict)


class BatchWriter:
    """A sink thread and a ledger thread; ``close()`` drains both and re-raises the first error."""

    def __init__(self, sink: Sink, ledger_path: object, *, on_written: Callable[[int], None], depth: int = 1):
        self._sink = sink
        self._ledger_path = ledger_path
        # The sink stage's own connection, for the marks it sets before each sink write.
        self._marks: Ledger | None = None
        self._on_written = on_written
        self._to_sink: queue.Queue[WriteJob | None] = queue.Queue(maxsize=depth)
        self._to_ledger: queue.Queue[WriteJob | None] = queue.Queue(maxsize=_LEDGER_QUEUE)
        self._pending: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        #: held while the writer uses the sink; take it to use the sink from another thread
        self.sink_lock = threading.Lock()
        self._error: BaseException | None = None
        self._sink_thread = threading.Thread(target=self._sink_stage, name="drift-sink-writer", daemon=True)
        self._ledger_thread = threading.Thread(
            target=self._ledger_stage, name="drift-ledger-writer", daemon=True
        )
        self._sink_thread.start()
        self._ledger_thread.start()

    def pending(self, content_hash: str) -> np.ndarray | None:
        with self._lock:
            return self._pending.get(content_hash)

    def submit(self, job: WriteJob) -> None:
        self._raise_if_failed()
        with self._lock:
            self._pending.update(job.new_vectors)
        self._put(self._to_sink, job, self._sink_thread)

    def close(self) -> None:
        """Wait for every submitted batch to be written and recorded, then raise the first error, if any."""
        for q, thread in ((self._to_sink, self._sink_thread), (self._to_ledger, self._ledger_thread)):
            if thread.is_alive():
                self._put(q, None, thread, check=False)
                thread.join()
        self._raise_if_failed()

    def _put(
        self,
        q: queue.Queue[WriteJob | None],
        item: WriteJob | None,
        consumer: threading.Thread,
        *,
        check: bool = True,
    ) -> None:
        while True:
            try:
                q.put(item, timeout=0.5)
                return
            except queue.Full:
                if check:
                    self._raise_if_failed()
                if not consumer.is_alive():
                    return

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            if self._error is None:
                self._error = exc

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _sink_stage(self) -> None:
        try:
            one_transaction = False
            try:
                self._marks = Ledger(self._ledger_path)  # type: ignore[arg-type]
                with self.sink_lock:
                    settle_marks(self._sink, self._marks)  # a killed run's marks, before any new write
                one_transaction = self._marks.shares_transactions_with(self._sink)
            except BaseException as exc:
                self._fail(exc)
            while True:
                job = self._to_sink.get()
                if job is None:
                    return
                if self._error is not None:
                    self._forget(job)
                    continue  # drain without writing: order matters, a gap would be worse
                if one_transaction:
                    self._write_and_record(job)
                    continue
                try:
                    assert self._marks is not None
                    self._marks.mark_pending(
                        self._sink.uri,
                        job.points.ids,
                        run_id=job.run_id,
                        hashes=[u.content_hash for u in job.provenance],
                        model=job.model,
                    )
                    with self.sink_lock:
                        self._sink.upsert(job.points)
                except BaseException as exc:
                    self._fail(exc)
                    self._forget(job)
                    continue
                job.points = _NO_POINTS  # the ledger needs provenance only: free the vectors now
                self._put(self._to_ledger, job, self._ledger_thread, check=False)
        finally:
            if self._marks is not None:
                self._marks.close()
            self._put(self._to_ledger, None, self._ledger_thread, check=False)

    def _write_and_record(self, job: WriteJob) -> None:
        """Write the points and record them in one transaction (a pgvector sink in the ledger's database).

        No mark is needed and no crash window is left: the points and their
        provenance commit together or not at all.
        """
        marks = self._marks
        assert marks is not None
        sink: Any = self._sink

        def record(conn: Any) -> None:
            marks.record_upserts_in(  # type: ignore[attr-defined]
                conn, sink.uri, job.provenance, model=job.model, run_id=job.run_id
            )

        try:
            with self.sink_lock:
                sink.upsert(job.points, also=record)
            self._on_written(len(job.provenance))
        except BaseException as exc:
            self._fail(exc)
        finally:
            self._forget(job)

    def _ledger_stage(self) -> None:
        try:
            ledger = Ledger(self._ledger_path)  # type: ignore[arg-type]
        except BaseException as exc:
            self._fail(exc)
            ledger = None
        try:
            done = False
            while not done:
                jobs: list[WriteJob] = []
                item = self._to_ledger.get()
                while item is not None:
                    jobs.append(item)
                    if sum(len(j.provenance) for j in jobs) >= _MAX_LEDGER_ROWS:
                        break
                    try:
                        item = self._to_ledger.get_nowait()
                    except queue.Empty:
                        break
                done = item is None
                if jobs:
                    self._record(ledger, jobs)
        finally:
            if ledger is not None:
                ledger.close()

    def _record(self, ledger: Ledger | None, jobs: list[WriteJob]) -> None:
        try:
            if ledger is None:
                return
            # One transaction per (model, run): a writer serves one run, so normally one in all.
            groups: dict[tuple[str, str], list[Upsert]] = {}
            for job in jobs:
                groups.setdefault((job.model, job.run_id), []).extend(job.provenance)
            for (model, run_id), rows in groups.items():
                ledger.record_upserts(self._sink.uri, rows, model=model, run_id=run_id)
            self._on_written(sum(len(j.provenance) for j in jobs))
        except BaseException as exc:
            self._fail(exc)
        finally:
            for job in jobs:
                self._forget(job)

    def _forget(self, job: WriteJob) -> None:
        with self._lock:
            for h in job.new_vectors:
                self._pending.pop(h, None)


def settle_marks(sink: Sink, ledger: Ledger, *, chunk: int = 1000) -> int:
    """Resolve the marks of runs that are over against what the sink holds; return rows changed.

    Runs killed without closing their row are first marked abandoned, so
    their marks are settled too; marks of live runs are left alone.
    """
    ledger.mark_abandoned()
    changed = 0
    for rows in ledger.unsettled(sink.uri, chunk=chunk):
        ids = [r["point_id"] for r in rows]
        stored = sink.fetch(ids) if sink.dimension() is not None else {}
        observed: dict[str, Observed] = {}
        for pid in ids:
            point = stored.get(pid)
            observed[pid] = (
                None if point is None else (point.payload.get(PAYLOAD_HASH), point.payload.get(PAYLOAD_MODEL))
            )
        changed += ledger.settle(sink.uri, observed)
    return changed
