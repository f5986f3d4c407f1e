"""airflow-provider-drift: the embedding lifecycle for vector search, as an Airflow provider."""

from __future__ import annotations

__version__ = "0.1.0"
