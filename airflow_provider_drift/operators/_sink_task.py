"""What every drift task resolves the same way: its sink, its ledger and its provider credentials.

Tasks take ``sink=`` (a URI), or ``sink_conn_id=`` + ``collection=`` (an Airflow
connection), or ``collection=`` alone (the embedded default). Checking the
combination at parse time and resolving it at run time in one place keeps
the operators and the sensor agreeing on where a collection lives.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_drift.engine.errors import ConfigError
from airflow_provider_drift.hooks.embedding import provider_options_from_connection
from airflow_provider_drift.hooks.ledger import DriftLedgerHook
from airflow_provider_drift.hooks.sink import DriftSinkHook, SinkSpec

if TYPE_CHECKING:
    from airflow_provider_drift.engine.ledger import Ledger


def check_sink_args(
    *, sink: str | None, sink_conn_id: str | None, collection: str | None, sink_schema: str | None
) -> None:
    """Reject contradictory sink arguments when the DAG is parsed, not at run time."""
    if sink and sink_conn_id:
        raise ConfigError("pass either sink= or sink_conn_id=, not both", hint="keep one of them")
    if sink and (collection or sink_schema):
        raise ConfigError(
            "a sink URI already names its collection; collection=/sink_schema= would be ignored",
            hint="drop collection=/sink_schema=, or use sink_conn_id= with collection=",
        )
    if not sink and not collection:
        raise ConfigError(
            "no collection to write",
            hint="pass collection= (with sink_conn_id= or for the embedded default), or a sink URI",
        )


def resolve_sink_spec(
    *, sink: str | None, sink_conn_id: str | None, collection: str | None, sink_schema: str | None
) -> SinkSpec:
    """Where a task writes: a sink URI, a connection's sink, or the embedded default."""
    if sink:
        return SinkSpec(uri=sink)
    if sink_conn_id:
        return DriftSinkHook(sink_conn_id, collection=collection, schema=sink_schema).get_spec()
    from airflow_provider_drift.engine.sinks import default_sink_uri

    return SinkSpec(uri=default_sink_uri(str(collection)))


class SinkTaskMixin:
    """Run-time resolution of a task's sink, ledger and ``openai`` connection (set by the operator)."""

    sink: str | None
    sink_conn_id: str | None
    collection: str | None
    sink_schema: str | None
    ledger_conn_id: str
    openai_conn_id: str | None

    @cached_property
    def ledger(self) -> Ledger:
        return DriftLedgerHook(drift_ledger_conn_id=self.ledger_conn_id).get_ledger()

    @cached_property
    def sink_spec(self) -> SinkSpec:
        return resolve_sink_spec(
            sink=self.sink,
            sink_conn_id=self.sink_conn_id,
            collection=self.collection,
            sink_schema=self.sink_schema,
        )

    @cached_property
    def provider_options(self) -> dict[str, Any] | None:
        return provider_options_from_connection(self.openai_conn_id) if self.openai_conn_id else None
