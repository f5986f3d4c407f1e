"""Write batches (sink, then ledger) on a background thread while the next batch is prepared.

Why a thread: reading, hashing and embedding the next batch and writing the
current one are independent, and both the sink engines and SQLite release
the GIL while they work, so on two cores overlapping them is most of the
difference between "the pipeline" and "the sink alone".

Ordering and safety are those of the sequential loop: each batch goes to
the sink first, then to the ledger, in submission order. The writer has its
own ledger connection (WAL lets the planner read beside it). Texts of
batches that are queued but not yet recorded are served from ``pending`` so
a text repeated in the next batch is still paid for once. If a write fails,
the batches already embedded behind it (at most ``depth + 1``) are not
written; their texts are paid again by the re-run — the price of overlap.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .ledger import Ledger, Upsert
from .sinks.base import PointBatch, Sink


@dataclass
class WriteJob:
    points: PointBatch
    provenance: list[Upsert]
    model: str
    run_id: str
    #: content hash → vector, for texts first embedded in this batch
    new_vectors: dict[str, np.ndarray] = field(default_factory=dict)


class BatchWriter:
    """A single writer thread with a bounded queue; ``close()`` drains it and re-raises its error."""

    def __init__(self, sink: Sink, ledger_path: object, *, on_written: Callable[[int], None], depth: int = 1):
        self._sink = sink
        self._ledger_path = ledger_path
        self._on_written = on_written
        self._queue: queue.Queue[WriteJob | None] = queue.Queue(maxsize=depth)
        self._pending: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        #: held while the writer uses the sink; take it to use the sink from another thread
        self.sink_lock = threading.Lock()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="drift-writer", daemon=True)
        self._thread.start()

    def pending(self, content_hash: str) -> np.ndarray | None:
        with self._lock:
            return self._pending.get(content_hash)

    def submit(self, job: WriteJob) -> None:
        self._raise_if_failed()
        with self._lock:
            self._pending.update(job.new_vectors)
        while True:
            try:
                self._queue.put(job, timeout=0.5)
                return
            except queue.Full:
                self._raise_if_failed()

    def close(self) -> None:
        """Wait for every submitted batch to be written, then raise the first write error, if any."""
        if self._thread.is_alive():
            while True:
                try:
                    self._queue.put(None, timeout=0.5)
                    break
                except queue.Full:
                    if not self._thread.is_alive():
                        break
            self._thread.join()
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        ledger: Ledger | None = None
        try:
            ledger = Ledger(self._ledger_path)  # type: ignore[arg-type]
        except BaseException as exc:
            self._error = exc
        try:
            while True:
                job = self._queue.get()
                if job is None:
                    return
                if self._error is not None:
                    continue  # drain without writing: order matters, a gap would be worse
                try:
                    assert ledger is not None
                    with self.sink_lock:
                        self._sink.upsert(job.points)
                    ledger.record_upserts(self._sink.uri, job.provenance, model=job.model, run_id=job.run_id)
                    self._on_written(len(job.points))
                except BaseException as exc:
                    self._error = exc
                finally:
                    with self._lock:
                        for h in job.new_vectors:
                            self._pending.pop(h, None)
        finally:
            if ledger is not None:
                ledger.close()
