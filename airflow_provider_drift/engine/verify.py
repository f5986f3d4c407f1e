"""Compare what the sink holds with what the ledger records, point by point, in bounded memory.

``status()`` compares counts; that misses a point whose vector is of another
text than the ledger says (same count, wrong content). The sink stores each
point's content hash and model in its payload, written with the vector, so
the payload tells which text a vector is of. Two streamed passes:

1. the ledger's live rows in point-id order, a chunk at a time, each chunk
   fetched from the sink by id: hash/model disagreements, and ledger points
   the sink lacks;
2. the sink's points page by page, each page looked up in the ledger: points
   the ledger does not record as live.

Memory is one chunk plus the examples kept. ``fix=True`` makes the ledger
say what the sink holds (``Ledger.settle``, ``Ledger.adopt``): a wrong-text
point becomes a point of the sink's text, which the next run's dedup sees
differ from the source and rewrites; a missing point becomes deleted, so it
is embedded again; a point the ledger did not know (its payload names source
and key) becomes known, so dedup compares it and ``delete_missing`` can
remove it. A payload cannot vouch for a vector written outside drift with a
forged payload: verification proves agreement between ledger and sink, not
the vectors' arithmetic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .ledger import Ledger, Observed
from .sinks.base import PAYLOAD_HASH, PAYLOAD_KEY, PAYLOAD_MODEL, PAYLOAD_RUN, PAYLOAD_SOURCE, Sink

_EXAMPLES = 10
_ADOPT_FIELDS = (PAYLOAD_SOURCE, PAYLOAD_KEY, PAYLOAD_HASH, PAYLOAD_MODEL)


@dataclass
class VerifyReport:
    """Every disagreement between a sink and the ledger, counted, with a few examples of each."""

    sink: str
    ledger_points: int = 0
    sink_points: int = 0
    agreeing: int = 0
    #: live in the ledger, present in the sink, but another content hash or model in the payload
    mismatched: int = 0
    #: live in the ledger, absent from the sink
    missing_in_sink: int = 0
    #: in the sink, not live in the ledger
    unknown_to_ledger: int = 0
    #: live rows a run marked before writing and nobody settled yet (their hash is not a claim)
    pending: int = 0
    #: ledger rows changed to match the sink (``fix=True``)
    fixed: int = 0
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def disagreements(self) -> int:
        return self.mismatched + self.missing_in_sink + self.unknown_to_ledger

    @property
    def in_agreement(self) -> bool:
        return self.disagreements == 0

    def _example(self, kind: str, item: dict[str, Any]) -> None:
        shown = self.examples.setdefault(kind, [])
        if len(shown) < _EXAMPLES:
            shown.append(item)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "disagreements": self.disagreements, "in_agreement": self.in_agreement}


def verify(sink: Sink, ledger: Ledger, *, fix: bool = False, chunk: int = 1000) -> VerifyReport:
    """Check every live ledger row against the sink and every sink point against the ledger."""
    report = VerifyReport(sink=sink.uri)
    exists = sink.dimension() is not None
    for rows in ledger.live_points(sink.uri, chunk=chunk):
        report.ledger_points += len(rows)
        stored = sink.fetch([r["point_id"] for r in rows]) if exists else {}
        observed: dict[str, Observed] = {}
        for r in rows:
            pid = r["point_id"]
            if r.get("pending_run"):
                report.pending += 1
            point = stored.get(pid)
            if point is None:
                report.missing_in_sink += 1
                report._example(
                    "missing_in_sink",
                    {
                        "point_id": pid,
                        "source": r["source"],
                        "key": r["source_key"],
                        "ledger_hash": r["content_hash"],
                    },
                )
                observed[pid] = None
                continue
            seen_hash, seen_model = point.payload.get(PAYLOAD_HASH), point.payload.get(PAYLOAD_MODEL)
            if seen_hash == r["content_hash"] and seen_model == r["model"]:
                report.agreeing += 1
                if r.get("pending_run"):
                    observed[pid] = (seen_hash, seen_model)  # settles the stale mark
                continue
            report.mismatched += 1
            report._example(
                "mismatched",
                {
                    "point_id": pid,
                    "source": r["source"],
                    "key": r["source_key"],
                    "ledger_hash": r["content_hash"],
                    "sink_hash": seen_hash,
                    "ledger_model": r["model"],
                    "sink_model": seen_model,
                },
            )
            observed[pid] = (seen_hash, seen_model)
        if fix and observed:
            report.fixed += ledger.settle(sink.uri, observed)
    if exists:
        for page in sink.scroll(batch_size=chunk):
            report.sink_points += len(page)
            known = ledger.lookup(sink.uri, [p.id for p in page])
            adopt = []
            for p in page:
                state = known.get(p.id)
                if state is None or state.deleted:
                    report.unknown_to_ledger += 1
                    pay = p.payload
                    fields = tuple(
                        pay.get(f) for f in (PAYLOAD_SOURCE, PAYLOAD_KEY, PAYLOAD_HASH, PAYLOAD_MODEL)
                    )
                    if all(isinstance(f, str) for f in fields):
                        adopt.append((p.id, *fields, str(pay.get(PAYLOAD_RUN) or "repair")))
                    report._example(
                        "unknown_to_ledger",
                        {
                            "point_id": p.id,
                            "source": p.payload.get(PAYLOAD_SOURCE),
                            "key": p.payload.get(PAYLOAD_KEY),
                            "sink_hash": p.payload.get(PAYLOAD_HASH),
                        },
                    )
            if fix and adopt:
                report.fixed += ledger.adopt(sink.uri, adopt)  # type: ignore[arg-type]
    return report
