"""The Airflow Asset of a vector collection, so downstream DAGs can be scheduled on it.

The asset must be known when the DAG is parsed, without reading connections
or opening the sink, so it is built from what the task was given:

* a sink URI → that URI without credentials or options
  (``qdrant://host:6333/docs``, ``qdrant+local:///data/qdrant/docs``,
  ``pgvector://host:5432/db/docs``); a libpq URI
  (``postgresql://user:pw@host:5432/db?table=docs``) becomes its
  ``pgvector://host:5432/db/[schema.]docs`` — the ``postgres`` provider
  claims the ``postgresql`` scheme and refuses a URI that is not a table path;
* a sink connection → ``drift://<conn_id>/<collection>`` (or
  ``drift://<conn_id>/<schema>/<table>``);
* neither → the embedded default sink's URI for the collection.

Airflow accepts any URI scheme but ``airflow``; none of these schemes is
claimed by another provider's normaliser. A downstream DAG builds the same
asset with :func:`sink_asset` and the same arguments.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from airflow.sdk import Asset

from airflow_provider_drift.engine.errors import ConfigError

#: query parameters that are part of a sink's identity (the rest are connection options and secrets)
IDENTITY_PARAMS = ("table", "schema", "collection", "prefix", "store")


def sink_asset_uri(
    *,
    sink: str | None = None,
    sink_conn_id: str | None = None,
    collection: str | None = None,
    schema: str | None = None,
) -> str:
    """Return the asset URI of the collection a task writes (see the module docstring)."""
    if sink and sink_conn_id:
        raise ConfigError("pass either sink or sink_conn_id, not both", hint="keep one of them")
    if sink:
        return _credential_free(sink)
    if not collection:
        raise ConfigError(
            "no collection to write", hint="pass collection= (with sink_conn_id or for the embedded default)"
        )
    if sink_conn_id:
        path = "/".join(quote(p, safe="") for p in (schema, collection) if p)
        return f"drift://{quote(sink_conn_id, safe='')}/{path}"
    from airflow_provider_drift.engine.sinks import default_sink_uri

    return _credential_free(default_sink_uri(collection))


def sink_asset(
    *,
    sink: str | None = None,
    sink_conn_id: str | None = None,
    collection: str | None = None,
    schema: str | None = None,
) -> Asset:
    """Return the Asset a drift operator with these arguments declares as its outlet."""
    uri = sink_asset_uri(sink=sink, sink_conn_id=sink_conn_id, collection=collection, schema=schema)
    # name defaults to the URI, so a plain ``Asset("<uri>")`` in another DAG is the same asset.
    return Asset(uri)


def _credential_free(uri: str) -> str:
    parts = urlsplit(uri)
    if not parts.scheme:
        raise ConfigError(
            f"sink {uri!r} is not a URI",
            hint="use e.g. qdrant+local://~/.drift/qdrant/docs, qdrant://host:6333/docs or "
            "pgvector://user@host:5432/db/table",
        )
    netloc = parts.netloc.rpartition("@")[2]
    params = sorted(parse_qsl(parts.query, keep_blank_values=True))
    if parts.scheme.lower() in ("postgresql", "postgres"):
        found = dict(params)
        table = ".".join(p for p in (found.get("schema"), found.get("table") or found.get("collection")) if p)
        return f"pgvector://{netloc}{parts.path.rstrip('/')}/{quote(table, safe='.')}"
    query = [(k, v) for k, v in params if k in IDENTITY_PARAMS]
    # Built by hand: urlunsplit would turn qdrant+local:///abs into qdrant+local:/abs, and the asset's
    # name (the URI as given) would then differ from a plain Asset(sink) in a downstream DAG.
    suffix = f"?{urlencode(query)}" if query else ""
    return f"{parts.scheme.lower()}://{netloc}{parts.path.rstrip('/')}{suffix}"
