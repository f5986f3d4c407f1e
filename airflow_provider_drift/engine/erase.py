"""erase(): remove one source row's vector from every sink, prove it is gone, and record the proof.

The answer to "can you prove the vector is gone?": for each sink the ledger
has ever recorded the key in, the point is deleted, then fetched back by id;
only an empty answer counts as verified. The proof (what existed before,
what the sink returned after, point counts, times) is stored in the
ledger's ``erasures`` table and shown by ``Ledger.provenance()``.

Erase the row from the source table too: while the row exists, a later
change to it (``watch``) or a full ``embed`` embeds it again.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .errors import DriftError, SinkUnavailableError
from .handles import ledger_for, sink_for
from .identity import key_to_str, point_id
from .ledger import Ledger
from .ledger.base import utc_now
from .recorded import RunStart, recorded_run
from .sinks import open_sink
from .sinks.base import Sink

log = logging.getLogger(__name__)

ErasureStatus = Literal["erased", "not_found", "unverified"]
#: payload fields kept in the proof: what the deleted point held, never the text itself
_PROOF_FIELDS = ("content_hash", "model", "run_id", "source_version")


@dataclass
class SinkErasure:
    """One sink's part of an erasure."""

    sink: str
    point_id: str
    erasure_id: str
    verified: bool
    existed_before: bool | None
    error: str | None = None


@dataclass
class EraseRun:
    """What one erasure did: every sink touched and whether each one proved the point gone."""

    run_id: str
    source: str
    key: str
    point_id: str
    status: str = "erased"  # an ErasureStatus, or "failed" when the erasure itself raised
    sinks: list[SinkErasure] = field(default_factory=list)
    duration_s: float = 0.0
    #: every copy was already deleted (erased or removed by a refresh) before this request: checked again
    already_erased: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def erase(
    source: str,
    key: Any,
    *,
    ledger: Ledger | str | os.PathLike[str] | None = None,
    sinks: Sequence[str | Sink] = (),
    sink_options: Mapping[str, dict[str, Any]] | None = None,
) -> EraseRun:
    """Delete the vector of ``key`` of ``source`` from every sink the ledger knows it in, with proof.

    Returns status ``not_found`` (nothing touched) when the ledger never
    recorded the key. A sink that cannot be reached is recorded as an
    unverified erasure, the other sinks are still erased, and the call then
    raises :class:`SinkUnavailableError` — re-run it once the sink is back.

    :param sinks: how to reach recorded sinks that need credentials: URIs (or open sinks)
        whose identity matches what the ledger records. The ledger keeps sink URIs without
        secrets, so e.g. a pgvector sink recorded as ``pgvector://host:5432/db/public.docs``
        is reached through ``postgresql://user:password@host:5432/db?table=docs``.
    :param sink_options: options to open a recorded sink with, by its URI as the ledger records it
        (e.g. ``{"qdrant://host:6333/docs": {"api_key": ...}}``): the sinks may be of several kinds.
    """
    started = time.monotonic()
    key_text = key_to_str(key)
    pid = point_id(source, key_text)
    with ExitStack() as stack:
        led = ledger_for(ledger, stack)
        rows = led.points_for_key(source, key_text)
        record = EraseRun(run_id="", source=source, key=key_text, point_id=pid)
        if not rows:
            record.status = "not_found"
            record.duration_s = round(time.monotonic() - started, 3)
            return record
        record.already_erased = all(row["deleted_at"] is not None for row in rows)
        start = RunStart(kind="erase", source=source, params={"key": key_text})
        with recorded_run(led, record, start, started=started, details=_details):
            requested_at = utc_now()
            given = _by_identity(sinks)
            for row in rows:
                options = (sink_options or {}).get(row["sink"], {})
                record.sinks.append(
                    _erase_one(led, row, requested_at, record, options, given.get(row["sink"]))
                )
            failed = [s for s in record.sinks if not s.verified]
            record.status = "unverified" if failed else "erased"
            if failed:
                raise SinkUnavailableError(
                    f"could not prove the erasure of key {key_text!r} of {source} in "
                    + "; ".join(f"{s.sink} ({s.error})" for s in failed),
                    hint="the other sinks are erased and recorded; "
                    "re-run `drift erase` when the sink is back",
                    run_id=record.run_id,
                )
        return record


def _details(record: EraseRun) -> dict[str, Any]:
    """The erasure as its run records it: an unproven one stays ``unverified``, not just failed."""
    unproven = any(not s.verified for s in record.sinks)
    return {
        **record.to_dict(),
        "status": "unverified" if unproven else record.status,
        "n_deleted": sum(s.verified for s in record.sinks),
        "cost_usd": 0.0,  # an erasure calls no provider: its cost is known, and zero (not "unpriced")
    }


def _by_identity(sinks: Sequence[str | Sink]) -> dict[str, str | Sink]:
    """Map each given sink's ledger identity (credential-free URI) to how to reach it."""
    out: dict[str, str | Sink] = {}
    for given in sinks:
        if isinstance(given, Sink):
            out[given.uri] = given
            continue
        with open_sink(given) as opened:
            out[opened.uri] = given
    return out


def _erase_one(
    led: Ledger,
    row: dict[str, Any],
    requested_at: str,
    record: EraseRun,
    options: dict[str, Any],
    given: str | Sink | None,
) -> SinkErasure:
    """Delete, re-fetch and record one sink's copy; never raises for a sink that is down."""
    uri, pid = row["sink"], row["point_id"]
    proof: dict[str, Any] = {"sink": uri, "point_id": pid, "method": "delete by id, then fetch by id"}
    existed: bool | None = None
    error: str | None
    try:
        with ExitStack() as stack:
            sink = sink_for(given or uri, stack, options)
            before = sink.fetch([pid])
            existed = pid in before
            proof["existed_before"] = existed
            if existed:
                proof["payload_before"] = {k: before[pid].payload.get(k) for k in _PROOF_FIELDS}
            proof["count_before"] = sink.count()
            if row["deleted_at"] is None:  # see writer.py: invalidate, then delete
                led.mark_pending(uri, [pid], run_id=record.run_id)
            sink.delete([pid])
            sink.flush()
            after = sink.fetch([pid], with_vectors=True)
            proof["fetch_after"] = sorted(after)
            proof["count_after"] = sink.count()
    except DriftError as exc:
        proof["error"] = error = f"{type(exc).__name__}: {exc}"
        log.warning("erasure of %s in %s not verified: %s", pid, uri, exc)
        verified = False
    else:
        verified = not after
        error = None if verified else "still returned"
        proof["verified_at"] = utc_now()
        if row["deleted_at"] is None:
            led.record_deletes(uri, [pid], run_id=record.run_id)
    erasure_id = led.record_erasure(
        source=record.source,
        key=record.key,
        sink=uri,
        point_id=pid,
        requested_at=requested_at,
        verified=verified,
        proof=proof,
    )
    return SinkErasure(uri, pid, erasure_id, verified, existed, error)
