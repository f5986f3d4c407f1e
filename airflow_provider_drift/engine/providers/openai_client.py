"""Build the official ``openai`` client and translate its errors into the engine's.

Shared by the synchronous provider and the Batch API path. The client's own
retries are turned off (``max_retries=0``): the engine retries itself, with
full jitter, a wait budget, and a clear error when the budget is spent.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import ConfigError, ProviderError, ProviderUnavailableError
from .retry import RETRY_STATUSES, RetryDecision, parse_retry_after

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"


def build_client(
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    organization: str | None = None,
    project: str | None = None,
    timeout: float = 60.0,
    default_headers: Mapping[str, str] | None = None,
    default_query: Mapping[str, object] | None = None,
) -> Any:
    """An ``openai.OpenAI`` client from arguments, else ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``.

    A self-hosted compatible server (vLLM, Ollama, TEI) usually needs no key:
    with a non-OpenAI base URL and no key, a placeholder is sent.
    """
    try:
        import openai
    except ImportError as exc:  # pragma: no cover - openai is a core dependency
        raise ConfigError("the openai package is not installed", hint="pip install 'openai>=1.40'") from exc
    base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
    api_key = api_key or os.environ.get("OPENAI_API_KEY") or None
    if api_key is None:
        if base_url is None or base_url.rstrip("/") == OPENAI_DEFAULT_BASE_URL:
            raise ConfigError(
                "no OpenAI API key given",
                hint="set OPENAI_API_KEY, pass api_key=, or put the key in the password of the Airflow "
                "'openai' connection; for a compatible server pass its base_url",
            )
        api_key = "no-key"
    return openai.OpenAI(
        api_key=api_key,
        base_url=base_url,
        organization=organization,
        project=project,
        timeout=timeout,
        max_retries=0,
        default_headers=dict(default_headers) if default_headers else None,
        default_query=dict(default_query) if default_query else None,
    )


def classify(exc: BaseException) -> RetryDecision | None:
    """Retry on timeouts, dropped connections, 408/409/429/5xx; None for anything else."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return RetryDecision(True, None, "request timed out")
    if isinstance(exc, openai.APIConnectionError):
        return RetryDecision(True, None, f"connection failed: {exc.__cause__ or exc}")
    if isinstance(exc, openai.APIStatusError) and exc.status_code in RETRY_STATUSES:
        headers = dict(exc.response.headers) if exc.response is not None else None
        return RetryDecision(True, parse_retry_after(headers), f"HTTP {exc.status_code}: {_short(exc)}")
    return None


def _short(exc: BaseException, limit: int = 300) -> str:
    import openai

    text = str(exc)
    if isinstance(exc, openai.APIStatusError) and isinstance(exc.body, dict):
        text = str(exc.body.get("message") or exc.body.get("error") or text)
    return text if len(text) <= limit else text[:limit] + "…"


def to_engine_error(exc: Exception, *, base_url: str | None, model: str) -> Exception:
    """The engine error for a failure that retrying cannot fix (or that already exhausted retries)."""
    import openai

    where = base_url or OPENAI_DEFAULT_BASE_URL
    if isinstance(exc, ProviderError | ProviderUnavailableError | ConfigError):
        return exc
    if isinstance(exc, openai.AuthenticationError):
        return ProviderError(
            f"the provider at {where} refused the API key (HTTP 401): {_short(exc)}",
            hint="check the key (OPENAI_API_KEY or the 'openai' connection password) and its "
            "organization/project",
            status=401,
        )
    if isinstance(exc, openai.PermissionDeniedError):
        return ProviderError(
            f"the API key may not use {model} at {where} (HTTP 403): {_short(exc)}",
            hint="grant the key access to the model, or use another key/project",
            status=403,
        )
    if isinstance(exc, openai.NotFoundError):
        return ProviderError(
            f"{where} has no model {model!r} or no embeddings endpoint (HTTP 404): {_short(exc)}",
            hint="check the model name and that base_url ends with the API root (e.g. .../v1)",
            status=404,
        )
    if isinstance(exc, openai.BadRequestError | openai.UnprocessableEntityError):
        return ProviderError(
            f"the provider rejected the request for {model} (HTTP {exc.status_code}): {_short(exc)}",
            hint="an input may be too long for this model or a parameter unsupported: set max_input_tokens= "
            "and on_too_long='truncate', or check dim= (dimensions)",
            status=exc.status_code,
        )
    if isinstance(exc, openai.APIStatusError):
        return ProviderError(
            f"the provider answered HTTP {exc.status_code} for {model}: {_short(exc)}",
            hint="see the provider's message; this status is not retried",
            status=exc.status_code,
        )
    if isinstance(exc, openai.APIResponseValidationError | ValueError | TypeError | KeyError):
        return ProviderError(
            f"the provider at {where} sent a response that is not a valid embeddings answer: {_short(exc)}",
            hint="check that base_url points at an OpenAI-compatible /v1 API",
        )
    return exc


def vectors_from_data(data: Any, *, expected: int, dim: int, model: str) -> np.ndarray:
    """Vectors in input order from an embeddings answer's ``data``; any mismatch is a ProviderError.

    Public for the Batch API path, whose output lines carry the same answers.
    """
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise ProviderError(
            f"the response of {model} has no 'data' list of embeddings",
            hint="check that base_url points at an OpenAI-compatible /v1 API",
        )
    if len(data) != expected:
        raise ProviderError(
            f"{model} returned {len(data)} vectors for {expected} inputs",
            hint="the server is not OpenAI-compatible for batched inputs; lower max_inputs_per_request "
            "(1 for servers that embed one text per request)",
            expected=expected,
            got=len(data),
        )
    order = [item.get("index", pos) for pos, item in enumerate(data)]
    if (
        not all(type(i) is int for i in order)
        or len(set(order)) != expected
        or min(order) < 0
        or max(order) >= expected
    ):
        raise ProviderError(
            f"{model} returned bad or repeated vector indexes",
            hint="the server's answer cannot be matched to the inputs",
        )
    raws = [item.get("embedding") for item in data]
    if all(isinstance(raw, str) for raw in raws):
        # one join and one frombuffer: twice as fast as decoding vector by vector
        try:
            blobs = [binascii.a2b_base64(raw) for raw in raws]
        except (binascii.Error, ValueError) as exc:
            raise ProviderError(f"{model} returned invalid base64 vectors: {exc}") from exc
        for blob in blobs:
            if len(blob) != 4 * dim:
                _decode(blob, dim=dim, model=model)  # raises the dimension error
        arr = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(expected, dim)
    else:
        arr = np.stack([_decode(raw, dim=dim, model=model) for raw in raws])
    if order == list(range(expected)):
        return arr.copy()  # the usual case; also makes the read-only frombuffer view writable
    out = np.empty((expected, dim), dtype=np.float32)
    out[order] = arr
    return out


def _decode(raw: Any, *, dim: int, model: str) -> np.ndarray:
    if isinstance(raw, bytes):
        vec = np.frombuffer(raw[: len(raw) - len(raw) % 4], dtype="<f4")
    elif isinstance(raw, str):
        vec = np.frombuffer(base64.b64decode(raw), dtype="<f4")
    elif isinstance(raw, list):
        vec = np.asarray(raw, dtype=np.float32)
    else:
        raise ProviderError(
            f"{model} returned an embedding of type {type(raw).__name__}",
            hint="expected a list of floats or a base64 string; try encoding_format='float'",
        )
    if vec.shape != (dim,):
        raise ProviderError(
            f"{model} returned {vec.size}-d vectors, expected {dim}",
            hint="pass dim= matching the model's output size (or a dimensions the model supports)",
            expected=dim,
            got=int(vec.size),
        )
    return vec
