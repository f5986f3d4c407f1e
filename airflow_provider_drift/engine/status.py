"""status(): what a sink holds, what it cost, and whether the ledger agrees with it."""

from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import Any

from .handles import ledger_for, sink_for
from .ledger import Ledger
from .sinks.base import Sink
from .verify import verify as verify_points


@dataclass
class SinkStatus:
    sink: str
    exists: bool
    dim: int | None
    points: int
    ledger_points: int
    in_agreement: bool
    models: dict[str, int] = field(default_factory=dict)
    watermarks: dict[str, int] = field(default_factory=dict)
    runs: int = 0
    cost_usd: float = 0.0
    unpriced_runs: int = 0
    last_runs: list[dict[str, Any]] = field(default_factory=list)
    #: the point-by-point comparison (``verify=True``): counts and examples of every disagreement
    verify: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def status(
    sink: str | Sink,
    *,
    ledger: Ledger | str | os.PathLike[str] | None = None,
    sink_options: dict[str, Any] | None = None,
    last: int = 5,
    verify: bool = False,
) -> SinkStatus:
    """Count the sink's points and compare with the ledger's live provenance rows.

    ``in_agreement`` is a count check by default: it catches vectors written
    outside drift and deletes the ledger never heard of, cheaply, on any
    size. ``verify=True`` compares every point's payload hash and model with
    the ledger (streamed, see verify.py) — a full read of both, which is what
    it takes to catch a point holding another text's vector — and
    ``in_agreement`` then also requires zero disagreements.
    """
    with ExitStack() as stack:
        sink_obj = sink_for(sink, stack, sink_options)
        led = ledger_for(ledger, stack)
        dim = sink_obj.dimension()
        points = sink_obj.count() if dim is not None else 0
        live = led.live_count(sink_obj.uri)
        totals = led.sink_totals(sink_obj.uri)
        last_runs = [
            {
                k: r[k]
                for k in (
                    "run_id",
                    "kind",
                    "status",
                    "model",
                    "started_at",
                    "duration_s",
                    "n_rows",
                    "n_embedded",
                    "n_written",
                    "n_deleted",
                    "cost_usd",
                    "error",
                )
            }
            for r in led.recent_runs(sink_obj.uri, last)
        ]
        report = verify_points(sink_obj, led) if verify else None
        return SinkStatus(
            sink=sink_obj.uri,
            exists=dim is not None,
            dim=dim,
            points=points,
            ledger_points=live,
            in_agreement=points == live and (report is None or report.in_agreement),
            models=led.models_in_sink(sink_obj.uri),
            watermarks=led.watermarks(sink_obj.uri),
            runs=totals["runs"],
            cost_usd=totals["cost_usd"],
            unpriced_runs=totals["unpriced_runs"],
            last_runs=last_runs,
            verify=report.to_dict() if report is not None else None,
        )
