"""Bad sink URIs and dimensions fail before anything is created, as terminal errors that name the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_drift.engine.errors import ConfigError, SinkUnavailableError
from airflow_provider_drift.engine.sinks import open_sink

from .fault_helpers import assert_clean_failure, run_drift, write_parquet


@pytest.mark.parametrize(
    "name",
    ["a%2F..%2F..%2Fx", "..", "%2E%2E", "a%2Fb", "%2Fetc", "a%5C..%5Cx", ".hidden"],
)
def test_embedded_collection_name_must_be_one_safe_path_component(tmp_path: Path, name: str) -> None:
    root = tmp_path / "deep" / "root"
    with pytest.raises(ConfigError, match="invalid collection name"):
        open_sink(f"qdrant+local://{root}/{name}")
    assert not (tmp_path / "x").exists() and not root.exists()


def test_encoded_separator_in_the_root_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="percent-encoded path separator"):
        open_sink(f"qdrant+local://{tmp_path}/a%2F..%2F..%2Fetc/docs")


def test_encoded_characters_in_plain_names_still_decode(tmp_path: Path) -> None:
    sink = open_sink(f"qdrant+local://{tmp_path}/my%20root/docs%2Dv2")
    try:
        assert sink.uri == f"qdrant+local://{tmp_path}/my root/docs-v2"
    finally:
        sink.close()


def test_qdrant_uri_with_a_key_and_a_bad_port_never_echoes_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        open_sink("qdrant://user:SECRETKEY@qdrant.example:notaport/docs")
    assert "SECRETKEY" not in str(caught.value) and "carries a credential" in caught.value.message
    with pytest.raises(ConfigError, match="bad port"):
        open_sink("qdrant://qdrant.example:notaport/docs")


@pytest.mark.parametrize(
    "uri",
    [
        "qdrant+local://{tmp}/wide",
        "qdrant+memory://wide?store=dimtest",
    ],
)
def test_qdrant_dimension_above_its_limit_creates_nothing(tmp_path: Path, uri: str) -> None:
    sink = open_sink(uri.format(tmp=tmp_path))
    try:
        with pytest.raises(ConfigError, match="1 to 65,536 dimensions"):
            sink.ensure_collection(100_000_000)
        with pytest.raises(ConfigError, match="invalid vector dimension"):
            sink.ensure_collection(0)
        assert sink.dimension() is None
        sink.ensure_collection(65_536)  # the limit itself is accepted
        assert sink.dimension() == 65_536
    finally:
        sink.drop()
        sink.close()


def test_pgvector_dimension_above_its_limit_creates_nothing(pg_dsn: str) -> None:
    from tests.sinks.conftest import _pg_uri

    sink = open_sink(_pg_uri(pg_dsn, "fault_wide"))
    try:
        with pytest.raises(ConfigError, match="1 to 16,000 dimensions"):
            sink.ensure_collection(100_000_000)
        assert sink.dimension() is None
    finally:
        sink.close()


@pytest.mark.parametrize(
    ("query", "says"),
    [("port=99999", "port"), ("sslmode=bogus", "sslmode"), ("connect_timeout=abc", "connect_timeout")],
)
def test_pg_options_libpq_cannot_use_are_terminal(query: str, says: str) -> None:
    uri = f"postgresql://u:s3cret@127.0.0.1/db?table=t&{query}"
    with pytest.raises(ConfigError, match=says) as caught, open_sink(uri) as sink:
        sink.dimension()
    assert "s3cret" not in str(caught.value)


def test_pg_port_out_of_range_in_the_authority_is_terminal() -> None:
    with pytest.raises(ConfigError, match="bad port '99999'"):
        open_sink("pgvector://u:pw@127.0.0.1:99999/db/docs")


def test_pg_server_that_refuses_connections_is_transient() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"pgvector://u@127.0.0.1:{port}/db/docs?connect_timeout=2"
    with pytest.raises(SinkUnavailableError, match="Connection refused"), open_sink(uri) as sink:
        sink.dimension()


def test_cli_bad_sinks_exit_2_in_one_line(tmp_path: Path) -> None:
    table = str(write_parquet(tmp_path / "t.parquet"))
    base = ["embed", "--table", table, "--text-col", "text", "--key-col", "id", "--shadow-mode"]
    env = {"DRIFT_HOME": str(tmp_path / "home")}

    bad_port = run_drift([*base, "--sink", "pgvector://u:pw@127.0.0.1/db/docs?port=99999"], env=env)
    assert_clean_failure(bad_port, code=2, says="port")
    bad_ssl = run_drift([*base, "--sink", "postgresql://u:pw@127.0.0.1/db?table=d&sslmode=bogus"], env=env)
    assert_clean_failure(bad_ssl, code=2, says="sslmode")

    keyed = run_drift([*base, "--sink", "qdrant://u:SECRETKEY@host:notaport/c"], env=env)
    assert_clean_failure(keyed, code=2, says="credential")
    assert "SECRETKEY" not in keyed.err + keyed.out

    escape = run_drift([*base, "--sink", f"qdrant+local://{tmp_path}/root/a%2F..%2F..%2Fx"], env=env)
    assert_clean_failure(escape, code=2, says="invalid collection name")
    assert not (tmp_path / "x").exists()

    wide = run_drift(
        [*base, "--sink", f"qdrant+local://{tmp_path}/q/wide", "--model", "custom/m", "--dim", "100000000"],
        env=env,
    )
    assert_clean_failure(wide, code=2, says="invalid vector dimension")
    assert not (tmp_path / "q" / "wide").exists()
