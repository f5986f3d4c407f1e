"""The Spark runner: embed's per-row work on the executors, its bookkeeping on the driver.

``embed(..., runner="spark")`` (or ``"auto"`` with a Spark source and a sink
every executor can reach) uses :func:`.distributed_embed.embed_partitions`;
the single-process runner streams the DataFrame through the driver instead
(:mod:`..sources.spark`). pyspark is imported only inside these modules'
functions, never at import time.
"""

from __future__ import annotations

from .distributed_embed import EXECUTOR_SINK_SCHEMES, SparkOptions, embed_partitions, executor_sink_problem

__all__ = ["EXECUTOR_SINK_SCHEMES", "SparkOptions", "embed_partitions", "executor_sink_problem"]
