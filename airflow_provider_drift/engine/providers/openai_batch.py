"""Embeddings through the OpenAI Batch API: half the price, results within 24 hours.

Three calls that need nothing but the batch id between them, so an Airflow
operator can submit, defer to a trigger that polls, and fetch in another
process: :meth:`OpenAIBatchEmbedder.submit` uploads a JSONL file of
embedding requests (packed and checked like the synchronous path) and
starts a batch; :meth:`~OpenAIBatchEmbedder.poll` reads its status;
:meth:`~OpenAIBatchEmbedder.fetch` downloads the results and puts them back
in the submitted order. Each request line's ``custom_id`` is
``"<first position>:<count>"``, so no state needs to be kept.

A batch can end with some lines failed or expired: fetch returns what it got
(paid for, at the discounted price) and the positions to resubmit.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np

from ..errors import ConfigError, ProviderError, ProviderUnavailableError
from ..models import BATCH_DISCOUNT, cost_usd
from .base import Embeddings
from .openai_client import RETRY_STATUSES, classify, to_engine_error, vectors_from_data
from .openai_provider import OpenAIProvider
from .retry import RetryDecision, run_with_retries

log = logging.getLogger(__name__)
T = TypeVar("T")

#: OpenAI's limits for one embeddings batch
MAX_TEXTS_PER_BATCH = 50_000
MAX_FILE_BYTES = 200 * 1024 * 1024
RUNNING = frozenset({"validating", "in_progress", "finalizing", "cancelling"})
_META_TEXTS = "drift_texts"


@dataclass(frozen=True)
class BatchStatus:
    batch_id: str
    status: str  # validating, in_progress, finalizing, completed, failed, expired, cancelling, cancelled
    total: int  # request lines
    completed: int
    failed: int
    errors: tuple[str, ...] = ()

    @property
    def done(self) -> bool:
        """True once the batch will not change any more: fetch (or read the errors) now."""
        return self.status not in RUNNING


@dataclass(frozen=True)
class BatchResult:
    """What a finished batch produced, in submitted order.

    ``embeddings.vectors[k]`` belongs to submitted text ``positions[k]``;
    ``failed`` maps every other position to the reason it has no vector.
    """

    batch_id: str
    total: int
    positions: list[int]
    embeddings: Embeddings
    failed: dict[int, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.failed


class OpenAIBatchEmbedder:
    """Submit, poll and fetch embedding batches for one ``openai/<model>``.

    Takes the options of :class:`OpenAIProvider` (``dim``, ``api_key``,
    ``base_url``, price, ``on_too_long``, request limits …); the price is
    multiplied by ``discount`` (Batch API: 0.5).
    """

    def __init__(
        self,
        model: str,
        *,
        discount: float = BATCH_DISCOUNT,
        completion_window: Literal["24h"] = "24h",
        max_retries: int = 5,
        max_total_wait_s: float = 60.0,
        **provider_options: Any,
    ) -> None:
        self.provider = OpenAIProvider(
            model, max_retries=max_retries, max_total_wait_s=max_total_wait_s, **provider_options
        )
        self.model = model
        self.dim = self.provider.dim
        self.discount = discount
        self.completion_window = completion_window
        self.max_texts_per_batch = MAX_TEXTS_PER_BATCH
        self._client = self.provider._client
        self._rng = random.Random(provider_options.get("seed"))

    def price_per_million_tokens(self) -> float | None:
        price = self.provider.price_per_million_tokens()
        return None if price is None else price * self.discount

    def estimate_tokens(self, texts: Sequence[str]) -> int:
        return self.provider.estimate_tokens(texts)

    # -- the three steps ----------------------------------------------------------------------------

    def submit(self, texts: Sequence[str], *, metadata: Mapping[str, str] | None = None) -> str:
        """Upload ``texts`` as one batch and start it; returns the batch id. Nothing is billed yet."""
        if not texts:
            raise ConfigError(
                "nothing to submit: no texts", hint="skip the batch when there is nothing to embed"
            )
        if len(texts) > self.max_texts_per_batch:
            raise ConfigError(
                f"{len(texts)} texts exceed one batch's limit of {self.max_texts_per_batch:,} inputs",
                hint="submit the texts in several batches",
            )
        lines = []
        for req in self.provider.plan_requests(texts):  # raises InvalidRowsError before any upload
            body: dict[str, Any] = {"model": self.provider.api_model, "input": req.texts}
            body["encoding_format"] = self.provider.encoding_format
            if self.provider._dimensions is not None:
                body["dimensions"] = self.provider._dimensions
            custom_id = f"{req.start}:{len(req.texts)}"
            lines.append(
                json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/embeddings", "body": body})
            )
        content = ("\n".join(lines) + "\n").encode()
        if len(content) > MAX_FILE_BYTES:
            raise ConfigError(
                f"the batch input file would be {len(content) / 2**20:.0f} MiB, over the 200 MiB limit",
                hint="submit fewer texts per batch",
            )
        upload = self._retry(
            lambda: self._client.files.create(file=("drift-batch.jsonl", content), purpose="batch"),
            what="upload of the batch input file",
        )
        meta = {**(metadata or {}), _META_TEXTS: str(len(texts)), "drift_model": self.model}
        return self._create_batch(upload.id, meta)

    def poll(self, batch_id: str) -> BatchStatus:
        """The batch's current status (cheap: one GET)."""
        batch = self._retrieve(batch_id)
        return _status(batch)

    def cancel(self, batch_id: str) -> BatchStatus:
        batch = self._retry(lambda: self._client.batches.cancel(batch_id), what=f"cancel of batch {batch_id}")
        return _status(batch)

    def fetch(self, batch_id: str) -> BatchResult:
        """Download a finished batch's vectors in submitted order, with the discounted cost."""
        batch = self._retrieve(batch_id)
        status = _status(batch)
        if status.status == "failed":
            raise ProviderError(
                f"batch {batch_id} failed: {'; '.join(status.errors) or 'no reason given'}",
                hint="fix the cause and submit the texts again (a failed batch is not billed)",
                batch_id=batch_id,
            )
        if not status.done:
            raise ProviderUnavailableError(
                f"batch {batch_id} is still {status.status}", hint="poll until it is done, then fetch"
            )
        total = self._total(batch)
        vectors: dict[int, np.ndarray] = {}
        failed: dict[int, str] = {}
        tokens = 0
        for line in self._lines(batch.output_file_id) + self._lines(batch.error_file_id):
            start, count = _span(line.get("custom_id"), total)
            response = line.get("response") or {}
            body = response.get("body") if isinstance(response, dict) else None
            if response.get("status_code") == 200 and isinstance(body, dict):
                try:
                    got = vectors_from_data(body.get("data"), expected=count, dim=self.dim, model=self.model)
                except ProviderError as exc:
                    failed.update(dict.fromkeys(range(start, start + count), exc.message))
                    continue
                vectors.update(zip(range(start, start + count), got, strict=True))
                usage = body.get("usage") or {}
                tokens += int(usage.get("prompt_tokens") or 0)
            else:
                reason = _line_error(line)
                failed.update(dict.fromkeys(range(start, start + count), reason))
        for pos in range(total):
            if pos not in vectors and pos not in failed:
                failed[pos] = f"no result for this text (batch {status.status})"
        positions = sorted(vectors)
        matrix = (
            np.stack([vectors[p] for p in positions]) if positions else np.zeros((0, self.dim), np.float32)
        )
        price = self.price_per_million_tokens()
        if failed:
            log.warning(
                "batch %s: %d of %d texts have no vector; resubmit them", batch_id, len(failed), total
            )
        return BatchResult(
            batch_id, total, positions, Embeddings(matrix, tokens, cost_usd(tokens, price)), failed
        )

    def delete_files(self, batch_id: str) -> None:
        """Remove the batch's input, output and error files from the provider's storage."""
        batch = self._retrieve(batch_id)
        for file_id in (batch.input_file_id, batch.output_file_id, batch.error_file_id):
            if file_id:
                self._delete_file(file_id)

    def close(self) -> None:
        self.provider.close()

    def _retrieve(self, batch_id: str) -> Any:
        return self._retry(
            lambda: self._client.batches.retrieve(batch_id), what=f"status of batch {batch_id}"
        )

    def _delete_file(self, file_id: str) -> None:
        self._retry(lambda: self._client.files.delete(file_id), what=f"delete of file {file_id}")

    # -- helpers ------------------------------------------------------------------------------------

    def _create_batch(self, file_id: str, metadata: dict[str, str]) -> str:
        """Start the batch; after an answer lost in transit, find the batch rather than pay twice."""

        def create() -> str:
            batch = self._client.batches.create(
                input_file_id=file_id,
                endpoint="/v1/embeddings",
                completion_window=self.completion_window,
                metadata=metadata,
            )
            return str(batch.id)

        def classify_create(exc: BaseException) -> RetryDecision | None:
            decision = classify(exc)
            status = getattr(exc, "status_code", None)
            if decision is not None and status not in RETRY_STATUSES:
                # timeout or dropped connection: the batch may exist; look before trying again
                existing = self._find_batch(file_id)
                if existing is not None:
                    raise _Found(existing)
            return decision

        try:
            return self._retry(create, what="creation of the batch", classifier=classify_create)
        except _Found as found:
            return found.batch_id

    def _find_batch(self, file_id: str) -> str | None:
        try:
            page = self._client.batches.list(limit=100)
        except Exception:  # the lookup is best effort; the retry then decides
            return None
        for batch in page.data:
            if batch.input_file_id == file_id:
                log.info("batch for %s was created despite the failed answer: %s", file_id, batch.id)
                return str(batch.id)
        return None

    def _total(self, batch: Any) -> int:
        meta = batch.metadata or {}
        if _META_TEXTS in meta:
            return int(meta[_META_TEXTS])
        total = 0  # submitted elsewhere: count the inputs of the input file
        for line in self._lines(batch.input_file_id):
            total += len(line.get("body", {}).get("input") or [])
        return total

    def _lines(self, file_id: str | None) -> list[dict[str, Any]]:
        if not file_id:
            return []
        raw = self._retry(lambda: self._client.files.content(file_id).content, what=f"download of {file_id}")
        try:
            return [json.loads(x) for x in raw.decode().splitlines() if x.strip()]
        except ValueError as exc:
            raise ProviderError(
                f"batch file {file_id} is not JSON lines: {exc}", hint="check that base_url is the OpenAI API"
            ) from exc

    def _retry(
        self,
        call: Callable[[], T],
        *,
        what: str,
        classifier: Callable[[BaseException], RetryDecision | None] = classify,
    ) -> T:
        try:
            return run_with_retries(
                call, classify=classifier, policy=self.provider.policy, rng=self._rng, what=what
            )
        except _Found:
            raise
        except Exception as exc:
            raise to_engine_error(exc, base_url=self.provider.base_url, model=self.model) from exc


class _Found(Exception):
    def __init__(self, batch_id: str) -> None:
        self.batch_id = batch_id


def _status(batch: Any) -> BatchStatus:
    counts = batch.request_counts
    errors = tuple(
        f"{e.code}: {e.message}" + (f" (line {e.line})" if getattr(e, "line", None) else "")
        for e in ((batch.errors.data or []) if batch.errors else [])
    )
    return BatchStatus(
        batch_id=str(batch.id),
        status=str(batch.status),
        total=counts.total if counts else 0,
        completed=counts.completed if counts else 0,
        failed=counts.failed if counts else 0,
        errors=errors,
    )


def _span(custom_id: Any, total: int) -> tuple[int, int]:
    try:
        start_s, count_s = str(custom_id).split(":")
        start, count = int(start_s), int(count_s)
    except ValueError as exc:
        raise ProviderError(
            f"batch result line has custom_id {custom_id!r}, not one drift submitted",
            hint="fetch only batches submitted by OpenAIBatchEmbedder.submit",
        ) from exc
    if start < 0 or count <= 0 or start + count > total:
        raise ProviderError(f"batch result line {custom_id!r} points outside the {total} submitted texts")
    return start, count


def _line_error(line: dict[str, Any]) -> str:
    error = line.get("error")
    if isinstance(error, dict):
        return f"{error.get('code')}: {error.get('message')}"
    response = line.get("response") or {}
    body = response.get("body") or {}
    inner = body.get("error") if isinstance(body, dict) else None
    message = inner.get("message") if isinstance(inner, dict) else body
    return f"HTTP {response.get('status_code')}: {message}"
