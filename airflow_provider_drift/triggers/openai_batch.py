"""OpenAIBatchTrigger: poll OpenAI Batch API jobs in the triggerer until every one is done."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Literal

from airflow.triggers.base import BaseTrigger, TriggerEvent

from .events import error_event

#: statuses this trigger emits; EmbedOperator.execute_complete rejects any other
EventStatus = Literal["success", "error"]
EVENT_STATUSES: frozenset[str] = frozenset({"success", "error"})


class OpenAIBatchTrigger(BaseTrigger):
    """
    Fire once every batch has stopped changing (completed, failed, expired or cancelled).

    Holds only batch ids, the model and the ``openai`` connection id: the API
    key is read from the connection in the triggerer, never serialised. Each
    poll is one blocking GET per unfinished batch, run in a thread so the
    event loop never blocks. A provider that stays unreachable past the
    client's retry budget is logged and polled again at the next interval —
    a batch may take 24 hours, an outage should not fail it; a terminal error
    (bad key, unknown batch) ends the wait.

    Emits one event: ``{"status": "success", "batches": [{"batch_id", "status", "total",
    "completed", "failed"}, ...], "job": job}`` or ``{"status": "error", "message",
    "error_type", "terminal"}``.

    :param batch_ids: the batches to wait for.
    :param model: ``openai/<model>`` the batches embed with.
    :param openai_conn_id: an ``openai`` connection (API key, base URL); None: the environment.
    :param dim: vector size, for models the engine does not know.
    :param poll_interval: seconds between polls.
    :param job: the submitted job record (JSON primitives, no secrets), returned unchanged in
        the success event so the task resumes with it. Carried here rather than in
        ``defer(kwargs=...)`` because ``dag.test()`` replaces those kwargs with the event.
    """

    def __init__(
        self,
        *,
        batch_ids: list[str],
        model: str,
        openai_conn_id: str | None = None,
        dim: int | None = None,
        poll_interval: float = 60.0,
        job: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.batch_ids = list(batch_ids)
        self.model = model
        self.openai_conn_id = openai_conn_id
        self.dim = dim
        self.poll_interval = poll_interval
        self.job = job

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "batch_ids": self.batch_ids,
                "model": self.model,
                "openai_conn_id": self.openai_conn_id,
                "dim": self.dim,
                "poll_interval": self.poll_interval,
                "job": self.job,
            },
        )

    def make_embedder(self) -> Any:
        """Build the engine's batch client from the connection (blocking: call it in a thread)."""
        from airflow_provider_drift.engine.providers.openai_batch import OpenAIBatchEmbedder
        from airflow_provider_drift.hooks.embedding import provider_options_from_connection

        options = provider_options_from_connection(self.openai_conn_id) if self.openai_conn_id else {}
        return OpenAIBatchEmbedder(self.model, dim=self.dim, **options)

    def poll(self, embedder: Any, batch_ids: list[str]) -> list[Any]:
        """One status per batch (blocking: call it in a thread)."""
        return [embedder.poll(batch_id) for batch_id in batch_ids]

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_drift.engine.errors import DriftError, TransientError

        embedder = None
        done: dict[str, Any] = {}
        try:
            while True:
                waiting = [b for b in self.batch_ids if b not in done]
                try:
                    if embedder is None:
                        embedder = await asyncio.to_thread(self.make_embedder)
                    statuses = await asyncio.to_thread(self.poll, embedder, waiting)
                except DriftError as exc:
                    if isinstance(exc, TransientError):
                        self.log.warning("polling failed (%s); next poll in %ss", exc, self.poll_interval)
                        await asyncio.sleep(self.poll_interval)
                        continue
                    yield TriggerEvent(error_event(exc))
                    return
                done.update({s.batch_id: s for s in statuses if s.done})
                if len(done) == len(self.batch_ids):
                    batches = [_event(done[b]) for b in self.batch_ids]
                    yield TriggerEvent({"status": "success", "batches": batches, "job": self.job})
                    return
                for status in statuses:
                    self.log.info(
                        "batch %s: %s, %d/%d requests done", status.batch_id, status.status,
                        status.completed + status.failed, status.total,
                    )  # fmt: skip
                await asyncio.sleep(self.poll_interval)
        finally:
            if embedder is not None:
                embedder.close()

    async def on_kill(self) -> None:
        """The task was killed while deferred (mark failed, clear): cancel the batches nothing will fetch."""
        cancelled = await asyncio.to_thread(self.cancel)
        self.log.info("task killed: cancelled batch(es) %s", ", ".join(cancelled) or "none")

    def cancel(self) -> list[str]:
        """Cancel every batch still running (blocking: call it in a thread); return those cancelled."""
        from airflow_provider_drift.engine.batch_embed import cancel_batches

        embedder = self.make_embedder()
        try:
            return cancel_batches(embedder, self.batch_ids)
        finally:
            embedder.close()


def _event(status: Any) -> dict[str, Any]:
    return {
        "batch_id": status.batch_id,
        "status": status.status,
        "total": status.total,
        "completed": status.completed,
        "failed": status.failed,
    }
