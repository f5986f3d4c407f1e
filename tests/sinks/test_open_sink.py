"""Sink URIs: what each form opens, its ledger identity, and clear errors for the rest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from airflow_provider_drift.engine.errors import ConfigError, SinkUnavailableError
from airflow_provider_drift.engine.sinks import (
    SUPPORTED_FORMS,
    default_sink_uri,
    open_sink,
    parse_qdrant_uri,
)
from airflow_provider_drift.engine.sinks.base import PointBatch
from airflow_provider_drift.engine.sinks.qdrant_local import QdrantLocalSink
from airflow_provider_drift.engine.sinks.qdrant_server import QdrantServerSink


@pytest.mark.parametrize(
    ("uri", "identity"),
    [
        ("qdrant://Qdrant.Example:6333/docs", "qdrant://qdrant.example:6333/docs"),
        ("qdrant://localhost/docs", "qdrant://localhost:6333/docs"),
        ("qdrants://cloud.example:6333/docs", "qdrant://cloud.example:6333/docs"),
        ("qdrant://h:6333/docs?https=true&grpc=true&grpc_port=7000", "qdrant://h:6333/docs"),
        ("qdrant://h:6333/docs?prefix=/qdrant/", "qdrant://h:6333/docs?prefix=qdrant"),
        ("qdrant+memory://docs", "qdrant+memory://docs"),
        ("qdrant+memory://docs?store=x", "qdrant+memory://docs?store=x"),
    ],
)
def test_qdrant_uris_have_a_canonical_transport_free_identity(uri: str, identity: str) -> None:
    sink = open_sink(uri)
    assert isinstance(sink, QdrantServerSink)
    assert sink.uri == identity
    assert sink.collection == "docs"
    sink.close()


def test_transport_options_are_parsed() -> None:
    spec = parse_qdrant_uri("qdrants://h:6334/docs?grpc=true&grpc_port=7000&prefix=p")
    assert (spec.https, spec.prefer_grpc, spec.grpc_port, spec.prefix) == (True, True, 7000, "p")
    spec = parse_qdrant_uri("qdrant://h/docs?https=1")
    assert (spec.https, spec.prefer_grpc, spec.port) == (True, False, 6333)


@pytest.mark.parametrize(
    "uri",
    ["qdrant://user:s3cr3t@h:6333/docs", "qdrant://:s3cr3t@h:6333/docs", "qdrant://h/docs?api_key=s3cr3t"],
)
def test_credentials_in_a_qdrant_uri_are_refused_without_echoing_them(uri: str) -> None:
    with pytest.raises(ConfigError) as err:
        open_sink(uri)
    assert "s3cr3t" not in str(err.value)
    assert "api_key" in str(err.value) and "QDRANT_API_KEY" in str(err.value)


@pytest.mark.parametrize(
    "uri",
    [
        "mongodb://h/docs",
        "docs",
        "qdrant://h:6333/",
        "qdrant://h:6333/a/b",
        "qdrant:///docs",
        "qdrant+local://",
        "qdrant+local:///tmp/bad name",
        "qdrant://h:6333/docs?grpc=maybe",
    ],
)
def test_malformed_or_unknown_uris_are_config_errors_with_a_hint(uri: str) -> None:
    with pytest.raises(ConfigError) as err:
        open_sink(uri)
    assert err.value.hint


def test_unknown_scheme_lists_supported_forms() -> None:
    with pytest.raises(ConfigError) as err:
        open_sink("weaviate://h/docs")
    assert err.value.hint is not None and SUPPORTED_FORMS in err.value.hint


def test_unknown_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="batchsize"):
        open_sink(f"qdrant+local://{tmp_path}/docs", batchsize=10)
    with pytest.raises(ConfigError, match="colour"):
        open_sink("qdrant://h/docs?colour=blue")


def test_an_open_sink_passes_through(tmp_path: Path) -> None:
    sink = open_sink(f"qdrant+local://{tmp_path}/docs?batch_size=7&lock_timeout=2")
    assert isinstance(sink, QdrantLocalSink)
    assert (sink.batch_size, sink.lock_timeout) == (7, 2.0)
    assert open_sink(sink) is sink


def test_default_sink_uri_follows_drift_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFT_HOME", str(tmp_path))
    assert default_sink_uri("tickets") == f"qdrant+local://{tmp_path.resolve()}/qdrant/tickets"
    monkeypatch.delenv("DRIFT_HOME")
    assert default_sink_uri("tickets") == f"qdrant+local://{Path('~/.drift/qdrant').expanduser()}/tickets"


@pytest.mark.parametrize(
    "uri", ["qdrant://127.0.0.1:9/docs", "qdrant://127.0.0.1:9/docs?grpc=true&grpc_port=9"]
)
def test_an_unreachable_server_is_a_transient_error(uri: str) -> None:
    sink = open_sink(uri, timeout=2)
    with pytest.raises(SinkUnavailableError) as err:
        sink.ensure_collection(4)
    assert "127.0.0.1:9" in str(err.value) and err.value.hint
    with pytest.raises(SinkUnavailableError):
        sink.upsert(PointBatch(["6b9d3c52-8f0e-5c1a-9d4e-2f7a1b3c4d5e"], np.ones((1, 4), np.float32), [{}]))
    sink.close()


def test_api_key_comes_from_options_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QDRANT_API_KEY", "from-env")
    sink = open_sink("qdrants://h:6333/docs")
    assert isinstance(sink, QdrantServerSink)
    assert sink.client._client._api_key == "from-env"
    assert "from-env" not in repr(sink) and "from-env" not in sink.uri
    given = open_sink("qdrants://h:6333/docs", api_key="given")
    assert isinstance(given, QdrantServerSink)
    assert given.client._client._api_key == "given"
