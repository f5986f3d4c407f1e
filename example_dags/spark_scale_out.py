"""drift_spark_scale_out: embed a table on Spark executors, two ways.

* ``embed_on_spark`` — EmbedOperator with ``spark_conn_id``: the task builds the
  session from the connection (``spark_connect``: a Spark Connect server;
  ``spark``: a master URL such as ``local[2]`` or ``yarn``), the executors plan,
  embed and write, and the task records the run in the ledger.
* ``embed_with_spark_submit`` — the same job as a Spark application through the
  Apache Spark provider's ``SparkSubmitOperator``
  (``airflow_provider_drift/spark_job.py embed …``): the driver runs on the
  cluster and writes the ledger at ``--ledger`` there.

Both need a sink every executor can reach (pgvector here, or a Qdrant server)
and pyspark with Java wherever the driver runs. Shadow mode keeps it offline.
``DRIFT_SPARK_SINK`` overrides the pgvector URI the spark-submit job writes to.
"""

from __future__ import annotations

import os
from pathlib import Path

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, task

from airflow_provider_drift import spark_job
from airflow_provider_drift.operators import EmbedOperator

DEMO_DIR = Path(
    os.environ.get("DRIFT_DEMO_DIR") or Path(os.environ.get("DRIFT_HOME") or "~/.drift") / "demo"
).expanduser()
TICKETS = str(DEMO_DIR / "support_tickets.parquet")
MODEL = "openai/text-embedding-3-small"
SUBMIT_SINK = os.environ.get(
    "DRIFT_SPARK_SINK", "postgresql://drift:drift@postgres:5432/vectors?table=tickets_spark_submit"
)

with DAG(
    dag_id="drift_spark_scale_out",
    description="Embed support tickets on Spark executors (spark_conn_id, and spark-submit)",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["drift", "example", "spark"],
) as dag:

    @task
    def create_sample_parquet() -> str:
        """Write the sample tickets as Parquet unless the file exists."""
        import pyarrow.parquet as pq
        from deltalake import DeltaTable

        from airflow_provider_drift.engine.sources.sample import ensure_sample_tickets

        if not os.path.exists(TICKETS):
            delta, _ = ensure_sample_tickets(str(DEMO_DIR / "support_tickets"), n=2_000, seed=0)
            pq.write_table(DeltaTable(delta).to_pyarrow_table(), TICKETS)
        return TICKETS

    embed_on_spark = EmbedOperator(
        task_id="embed_on_spark",
        table=TICKETS,
        text_col="body",
        key_col="ticket_id",
        model=MODEL,
        sink_conn_id="pgvector_default",
        collection="tickets_spark",
        spark_conn_id="spark_default",
        shadow_mode=True,
    )

    embed_with_spark_submit = SparkSubmitOperator(
        task_id="embed_with_spark_submit",
        conn_id="spark_default",
        application=spark_job.__file__,
        application_args=[
            "embed",
            "--source",
            TICKETS,
            "--text-col",
            "body",
            "--key-col",
            "ticket_id",
            "--model",
            MODEL,
            "--shadow-mode",
            "--sink",
            SUBMIT_SINK,
            "--ledger",
            str(DEMO_DIR / "spark-submit-ledger.db"),
        ],
    )

    create_sample_parquet() >> [embed_on_spark, embed_with_spark_submit]
