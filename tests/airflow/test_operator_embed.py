"""EmbedOperator and the hooks behind it: templating, assets, connections, error mapping, provider info."""

from __future__ import annotations

import datetime as dt
import importlib
import importlib.metadata
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pendulum
import pytest
from airflow.sdk import DAG, Asset, AssetAlias, Connection, task
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_drift.engine.embed import embed
from airflow_provider_drift.engine.errors import ConfigError, SinkUnavailableError
from airflow_provider_drift.engine.ledger import Ledger
from airflow_provider_drift.engine.sinks import default_sink_uri
from airflow_provider_drift.engine.sources.sample import write_sample_tickets
from airflow_provider_drift.get_provider_info import LEDGER_PATH_EXAMPLE, get_provider_info
from airflow_provider_drift.hooks import DriftLedgerHook, DriftSinkHook
from airflow_provider_drift.hooks.embedding import openai_provider_options, provider_options_from_connection
from airflow_provider_drift.hooks.sink import SinkSpec, sink_spec
from airflow_provider_drift.operators import EmbedOperator, sink_asset

from .conftest import register_dag

START = pendulum.datetime(2026, 1, 1, tz="UTC")


@pytest.fixture
def tickets(tmp_path: Path) -> str:
    return write_sample_tickets(tmp_path / "tickets", n=40, seed=0)


def _embed_op(**kwargs: Any) -> EmbedOperator:
    args: dict[str, Any] = {
        "task_id": "embed",
        "table": "/data/tickets",
        "text_col": "body",
        "key_col": "ticket_id",
        "model": "openai/text-embedding-3-small",
        "shadow_mode": True,
    }
    return EmbedOperator(**{**args, **kwargs})


def _context(op: EmbedOperator) -> dict[str, Any]:
    ti = SimpleNamespace(dag_id="adhoc", task_id=op.task_id, run_id="manual__1", try_number=1, map_index=-1)
    return {"ti": ti, "run_id": "manual__1"}


def _conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, value: dict[str, Any] | str) -> None:
    env = value if isinstance(value, str) else json.dumps(value)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", env)


# --- templating and assets ----------------------------------------------------------------------------------


def test_templated_fields_render_from_the_context() -> None:
    op = _embed_op(
        table="{{ params.root }}/tickets",
        source_name="tickets_{{ ds_nodash }}",
        collection="tickets_{{ params.env }}",
        filter="updated_at >= '{{ ds }}'",
        model="{{ params.model }}",
    )
    assert {"source", "table", "collection", "filter", "sink", "model"} <= set(op.template_fields)
    op.render_template_fields(
        {"params": {"root": "/lake", "env": "prod", "model": "openai/text-embedding-3-large"},
         "ds": "2026-03-01", "ds_nodash": "20260301"}
    )  # fmt: skip
    assert (op.table, op.source_name, op.collection, op.filter, op.model) == (
        "/lake/tickets",
        "tickets_20260301",
        "tickets_prod",
        "updated_at >= '2026-03-01'",
        "openai/text-embedding-3-large",
    )


def test_collection_is_declared_as_an_outlet_asset() -> None:
    by_uri = _embed_op(sink="qdrant://user:secret@qdrant:6333/tickets?api_key=k&grpc=true")
    by_conn = _embed_op(sink_conn_id="qdrant_default", collection="tickets")
    by_pg = _embed_op(sink_conn_id="pgvector_default", collection="tickets", sink_schema="search")
    by_libpq = _embed_op(
        sink="postgresql://drift:pw@db:5432/vectors?table=tickets&schema=search&sslmode=require"
    )
    default = _embed_op(collection="tickets")
    templated = _embed_op(collection="tickets_{{ params.env }}")

    assert by_uri.outlets == [Asset("qdrant://qdrant:6333/tickets")]  # no credentials, no options
    assert by_conn.outlets == [Asset("drift://qdrant_default/tickets")]
    assert by_pg.outlets == [Asset("drift://pgvector_default/search/tickets")]
    assert by_libpq.outlets == [Asset("pgvector://db:5432/vectors/search.tickets")]  # parses; no password
    assert default.outlets == [Asset(default_sink_uri("tickets"))]
    assert templated.outlets == [AssetAlias("drift-collection:embed")]
    # Downstream DAGs build the same asset from the same arguments.
    assert sink_asset(sink_conn_id="qdrant_default", collection="tickets") == by_conn.outlets[0]


def test_user_outlets_are_kept_next_to_the_collection() -> None:
    report = Asset("s3://reports/tickets.csv")
    op = _embed_op(collection="tickets", outlets=[report])
    assert op.outlets == [report, Asset(default_sink_uri("tickets"))]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"table": None}, "exactly one of source= or table="),
        ({"source": "/data/tickets"}, "exactly one of source= or table="),
        ({"sink": "qdrant://h:6333/c", "sink_conn_id": "qdrant_default"}, "either sink= or sink_conn_id="),
        ({"sink": "qdrant://h:6333/c", "collection": "c"}, "already names its collection"),
        ({"sink_conn_id": "qdrant_default"}, "no collection to write"),
        ({}, "no collection to write"),
    ],
)
def test_contradictory_arguments_fail_when_the_dag_is_parsed(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _embed_op(**kwargs)


# --- connections --------------------------------------------------------------------------------------------


def test_qdrant_connection_resolves_like_the_official_provider() -> None:
    conn = Connection(
        conn_id="qdrant_cloud",
        conn_type="qdrant",
        host="xyz.cloud.qdrant.io",
        port=6334,
        password="the-key",
        extra=json.dumps({"https": True, "prefix": "v1", "grpc_port": 7334, "prefer_gprc": True}),
    )
    assert sink_spec(conn, collection="tickets") == SinkSpec(
        uri="qdrant://xyz.cloud.qdrant.io:6334/tickets",
        options={"api_key": "the-key", "https": True, "grpc": True, "grpc_port": 7334, "prefix": "v1"},
    )


def test_qdrant_url_extra_wins_over_host_and_gives_https_and_port() -> None:
    conn = Connection(
        conn_id="q",
        conn_type="qdrant",
        host="ignored",
        extra=json.dumps({"url": "https://q.example.com:443"}),
    )
    assert sink_spec(conn, collection="docs") == SinkSpec(
        uri="qdrant://q.example.com:443/docs", options={"https": True}
    )


def test_qdrant_uri_connection_coerces_string_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    _conn(
        monkeypatch,
        "qdrant_uri",
        "qdrant://:api%2Fkey@qdrant:6333/?https=false&prefer_grpc=true&grpc_port=6334",
    )
    assert DriftSinkHook("qdrant_uri", collection="tickets").get_spec() == SinkSpec(
        uri="qdrant://qdrant:6333/tickets",
        options={"api_key": "api/key", "https": False, "grpc": True, "grpc_port": 6334},
    )


def test_qdrant_extra_that_is_not_a_boolean_is_a_clear_error() -> None:
    conn = Connection(conn_id="q", conn_type="qdrant", host="h", extra=json.dumps({"https": "maybe"}))
    with pytest.raises(ConfigError, match="'https' must be true or false"):
        sink_spec(conn, collection="docs")


def test_postgres_connection_resolves_to_a_pgvector_sink(monkeypatch: pytest.MonkeyPatch) -> None:
    _conn(
        monkeypatch,
        "pgvector_default",
        {"conn_type": "postgres", "host": "pg", "port": 5433, "login": "drift", "password": "p@ss/word",
         "schema": "vectors", "extra": {"sslmode": "require"}},
    )  # fmt: skip
    spec = DriftSinkHook("pgvector_default", collection="tickets", schema="search").get_spec()
    assert spec == SinkSpec(
        uri="pgvector://drift:p%40ss%2Fword@pg:5433/vectors/tickets?schema=search&sslmode=require"
    )


def test_postgres_connection_without_database_is_a_clear_error() -> None:
    conn = Connection(conn_id="pg", conn_type="postgres", host="pg", login="u")
    with pytest.raises(ConfigError, match="names no database"):
        sink_spec(conn, table="tickets")


@pytest.mark.parametrize(
    ("conn", "kwargs", "message"),
    [
        (Connection(conn_id="s3", conn_type="aws"), {"collection": "c"}, "type 'aws', which is not a vector"),
        (Connection(conn_id="q", conn_type="qdrant", host="h"), {}, "names a server, not a collection"),
        (Connection(conn_id="q", conn_type="qdrant", host="h"), {"collection": "c", "schema": "s"}, "tables"),
    ],
)
def test_sink_connection_errors_name_the_fix(conn: Connection, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        sink_spec(conn, **kwargs)
    assert err.value.hint


def test_openai_connection_resolves_to_provider_options(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = Connection(
        conn_id="openai_default",
        conn_type="openai",
        host="https://ignored.example.com/v1",
        password="sk-test",
        extra=json.dumps(
            {"openai_client_kwargs": {"base_url": "http://127.0.0.1:8080/v1", "organization": "o"}}
        ),
    )
    assert openai_provider_options(conn) == {
        "api_key": "sk-test",
        "base_url": "http://127.0.0.1:8080/v1",
        "organization": "o",
    }
    local = "http://127.0.0.1:9/v1"
    _conn(monkeypatch, "openai_local", {"conn_type": "openai", "host": local, "password": "k"})
    assert provider_options_from_connection("openai_local") == {"api_key": "k", "base_url": local}


def test_ledger_hook_defaults_without_a_connection_and_reads_path_or_host(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert DriftLedgerHook().get_path() is None
    with DriftLedgerHook().get_ledger() as ledger:
        assert ledger.path == tmp_path / "ledger.db"  # $DRIFT_LEDGER_PATH (set per test)

    host_db = str(tmp_path / "host.db")
    _conn(monkeypatch, "drift_ledger_default", {"conn_type": "drift_ledger", "host": host_db})
    assert DriftLedgerHook().get_path() == host_db
    _conn(monkeypatch, "team_ledger", f"drift-ledger://?path={tmp_path / 'team.db'}")
    with DriftLedgerHook("team_ledger").get_ledger() as ledger:
        assert ledger.path == tmp_path / "team.db"
    assert (tmp_path / "team.db").exists()


def test_missing_named_ledger_connection_says_how_to_create_it() -> None:
    with pytest.raises(ConfigError, match="'team_ledger' is not defined") as err:
        DriftLedgerHook("team_ledger").get_path()
    assert "AIRFLOW_CONN_TEAM_LEDGER" in str(err.value)
    assert "airflow connections add team_ledger" in str(err.value)


@pytest.mark.parametrize("field", ["sink_conn_id", "ledger_conn_id", "openai_conn_id"])
def test_missing_explicit_connection_fails_the_task_without_retry(field: str, tickets: str) -> None:
    kwargs: dict[str, Any] = {"table": tickets, "collection": "tickets", field: "no_such_conn"}
    op = _embed_op(**kwargs)
    with pytest.raises(
        AirflowFailException,
        match=r"^drift ConfigError: .*AIRFLOW_CONN_NO_SUCH_CONN.* — .*'no_such_conn' is not defined$",
    ):
        op.execute(_context(op))  # type: ignore[arg-type]


# --- error mapping under dag.test() -------------------------------------------------------------------------


def _retrying_dag(dag_id: str, **op_kwargs: Any) -> Any:
    with DAG(
        dag_id,
        schedule=None,
        start_date=START,
        default_args={"retries": 2, "retry_delay": dt.timedelta(0)},
    ) as dag:
        _embed_op(task_id="embed", **op_kwargs)
    return register_dag(dag)


def test_terminal_engine_error_fails_at_once_despite_retries(
    run_dag: Any, tickets: str, tmp_path: Path
) -> None:
    sink = f"qdrant+local://{tmp_path / 'qdrant' / 'tickets'}"
    embed(tickets, text_col="body", key_col="ticket_id", model="openai/text-embedding-3-small", sink=sink,
          shadow_mode=True)  # fmt: skip
    # Same collection, a model of another dimension: DimensionMismatchError (terminal).
    large = "openai/text-embedding-3-large"
    dag = _retrying_dag("drift_test_terminal", table=tickets, sink=sink, model=large)
    dag_run = run_dag(dag)
    ti = dag_run.get_task_instance("embed")
    assert (dag_run.state, ti.state, ti.try_number) == ("failed", "failed", 1)


def test_transient_engine_error_is_retried(run_dag: Any, tickets: str) -> None:
    # Nothing listens on port 9: the sink is unreachable, a transient error that reaches Airflow unchanged.
    unreachable = "qdrant://127.0.0.1:9/tickets"
    op = _embed_op(table=tickets, sink=unreachable)
    with pytest.raises(SinkUnavailableError):
        op.execute(_context(op))  # type: ignore[arg-type]
    dag = _retrying_dag("drift_test_transient", table=tickets, sink=unreachable)
    dag_run = run_dag(dag)
    ti = dag_run.get_task_instance("embed")
    assert (dag_run.state, ti.state, ti.try_number) == ("failed", "failed", 3)


# --- assets schedule downstream DAGs ------------------------------------------------------------------------


def _queued_and_events(dag_id: str) -> tuple[set[str], set[str]]:
    from airflow.models.asset import AssetDagRunQueue, AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        queued = {q.target_dag_id for q in session.query(AssetDagRunQueue).all()}
        events = {
            uri
            for (uri,) in session.query(AssetModel.uri)
            .join(AssetEvent, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetEvent.source_dag_id == dag_id)
        }
    return queued, events


def test_embed_emits_its_collection_asset_and_queues_downstream_dags(
    run_dag: Any, tickets: str, tmp_path: Path
) -> None:
    sink = f"qdrant+local://{tmp_path / 'qdrant' / 'tickets'}"
    with DAG("drift_test_producer", schedule=None, start_date=START) as producer:
        _embed_op(task_id="embed", table=tickets, sink=sink)
    # A user schedules on the sink URI they know; sink_asset(sink=sink) builds the same asset.
    with DAG("drift_test_consumer", schedule=[Asset(sink)], start_date=START) as consumer:

        @task
        def search() -> None:
            pass

        search()
    register_dag(consumer)
    dag_run = run_dag(register_dag(producer))
    assert dag_run.state == "success"
    queued, events = _queued_and_events("drift_test_producer")
    # Airflow normalises the URI (qdrant+local:///abs → qdrant+local:/abs) the same way on both sides.
    assert events == {Asset(sink).uri} == {sink_asset(sink=sink).uri}
    assert "drift_test_consumer" in queued


def test_templated_collection_emits_the_rendered_asset_through_an_alias(
    run_dag: Any, tickets: str, tmp_path: Path
) -> None:
    with DAG("drift_test_alias", schedule=None, start_date=START, params={"env": "staging"}) as dag:
        _embed_op(task_id="embed", table=tickets, collection="tickets_{{ params.env }}")
    dag_run = run_dag(register_dag(dag))
    assert dag_run.state == "success"
    run = dag_run.get_task_instance("embed").xcom_pull(task_ids="embed")
    assert run["n_written"] == 40
    _, events = _queued_and_events("drift_test_alias")
    assert events == {sink_asset(collection="tickets_staging").uri}


# --- provider metadata --------------------------------------------------------------------------------------


def test_provider_info_entry_point_loads_and_matches_airflows_schema() -> None:
    import jsonschema
    from airflow import providers_manager

    eps = importlib.metadata.entry_points(group="apache_airflow_provider")
    ours = [ep for ep in eps if ep.value.startswith("airflow_provider_drift.")]
    assert [ep.value for ep in ours] == ["airflow_provider_drift.get_provider_info:get_provider_info"]
    info = ours[0].load()()
    assert info == get_provider_info()
    schema_path = Path(providers_manager.__file__).parent / "provider_info.schema.json"
    jsonschema.validate(info, json.loads(schema_path.read_text()))


def test_providers_manager_sees_the_drift_ledger_connection_type() -> None:
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    hook = ProvidersManagerTaskRuntime().hooks["drift_ledger"]
    assert hook is not None
    assert hook.hook_class_name == "airflow_provider_drift.hooks.ledger.DriftLedgerHook"
    assert hook.connection_id_attribute_name == "drift_ledger_conn_id"
    pm = ProvidersManager()  # the API server's view: the connection form
    assert "airflow-provider-drift" in pm.providers
    widget = pm.connection_form_widgets["extra__drift_ledger__path"]
    assert widget.field["schema"]["title"] == "Ledger path"
    # The React form shows a text field's placeholder (and suggestions) from its schema's examples.
    assert widget.field["schema"]["examples"] == [LEDGER_PATH_EXAMPLE]
    assert widget.field["value"] is None  # a hint, not a value the form would save
    behaviour = pm.field_behaviours["drift_ledger"]
    assert {"host", "login", "password", "port", "schema", "extra"} <= set(behaviour["hidden_fields"])


def test_the_connection_types_the_readme_names_are_offered_by_installed_providers() -> None:
    from airflow.providers_manager import ProvidersManager

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    named = set(re.findall(r"^\| `(\w+)`[^|]*\| [^|]+\| [^|]+\|$", readme, re.MULTILINE))
    assert named == {"qdrant", "openai", "postgres", "drift_ledger"}
    pm = ProvidersManager()
    packages = {
        "qdrant": "apache-airflow-providers-qdrant",
        "openai": "apache-airflow-providers-openai",
        "postgres": "apache-airflow-providers-postgres",
        "drift_ledger": "airflow-provider-drift",
    }
    for conn_type in sorted(named):
        hook = pm.hooks[conn_type]  # what the UI's connection-type list is built from
        assert hook is not None and hook.package_name == packages[conn_type], conn_type
        assert packages[conn_type] in pm.providers


def _listed_modules() -> list[str]:
    info = get_provider_info()
    groups = [*info["hooks"], *info["operators"], *info["sensors"], *info["triggers"]]
    return [module for group in groups for module in group["python-modules"]]


@pytest.mark.parametrize("module", _listed_modules())
def test_every_module_the_provider_lists_imports(module: str) -> None:
    importlib.import_module(module)


def test_dry_run_returns_the_plan_and_records_no_run(run_dag: Any, tickets: str, tmp_path: Path) -> None:
    with DAG("drift_test_dry_run", schedule=None, start_date=START) as dag:
        _embed_op(task_id="embed", table=tickets, collection="ledgered", dry_run=True)
    dag_run = run_dag(register_dag(dag))
    assert dag_run.state == "success"
    plan = dag_run.get_task_instance("embed").xcom_pull(task_ids="embed")
    assert (plan["status"], plan["n_rows_processed"], plan["n_written"]) == ("planned", 40, 40)
    assert dag.get_task("embed").outlets == []  # a plan must not trigger DAGs scheduled on the collection
    _, events = _queued_and_events("drift_test_dry_run")
    assert events == set()
    with Ledger(tmp_path / "ledger.db") as ledger:
        assert ledger.recent_runs(limit=5) == []  # a plan records nothing
