"""What a model accepts per input text, checked before anything is sent — one rule for real and shadow.

The OpenAI provider applies it before a request goes out, and shadow mode
applies the same rule for the model it stands in for, so a text the real API
would refuse (a 500k-token document) fails a shadow-mode test too, and
``on_too_long="truncate"`` embeds the same prefix in both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from ..errors import ConfigError, InvalidRowsError
from ..models import model_info
from .tokens import TokenCounter, TokenizerName, get_counter

OnTooLong = Literal["truncate", "error"]


class InputLimits:
    """The per-text limits of one model: no empty text, at most ``max_input_tokens`` tokens.

    ``max_input_tokens`` None means no per-text limit is known (a model the
    engine does not know): only empty texts are refused.
    """

    def __init__(
        self,
        model: str,
        *,
        max_input_tokens: int | None,
        on_too_long: OnTooLong = "error",
        counter: TokenCounter,
    ) -> None:
        if on_too_long not in ("truncate", "error"):
            raise ConfigError(f"on_too_long must be 'truncate' or 'error', got {on_too_long!r}")
        self.model = model
        self.max_input_tokens = max_input_tokens
        self.on_too_long = on_too_long
        self.counter = counter

    @classmethod
    def for_model(
        cls,
        model: str,
        *,
        on_too_long: OnTooLong = "error",
        max_input_tokens: int | None = None,
        tokenizer: TokenizerName = "auto",
    ) -> InputLimits:
        """The limits of ``model`` as the engine knows them; explicit arguments override."""
        info = model_info(model)
        return cls(
            model,
            max_input_tokens=max_input_tokens or (info.max_input_tokens if info else None),
            on_too_long=on_too_long,
            counter=get_counter(tokenizer, model_tokenizer=info.tokenizer if info else None),
        )

    def check(
        self, texts: Sequence[str], *, allow_empty: bool = False
    ) -> tuple[list[int], set[int], dict[int, str]]:
        """A token upper bound per text, which of them are exact counts, and the problems found.

        Counting tokens is the costly part, so a text is counted only when its
        UTF-8 length (a strict upper bound) cannot rule out the limit.
        ``allow_empty`` lets empty strings pass (shadow vectors exist for them).
        """
        bounds: list[int] = []
        counted: set[int] = set()
        problems: dict[int, str] = {}
        limit = self.max_input_tokens
        for i, text in enumerate(texts):
            if not isinstance(text, str) or (not text and not allow_empty):
                bounds.append(0)
                empty = isinstance(text, str)
                problems[i] = (
                    "empty text (the API rejects it)" if empty else f"not a string: {type(text).__name__}"
                )
                continue
            n = len(text.encode("utf-8"))
            if limit and n > limit:
                n = self.counter.count(text)
                counted.add(i)
                if n > limit and self.on_too_long == "error":
                    bound = "" if self.counter.exact else " at most"
                    problems[i] = f"{n}{bound} tokens > max_input_tokens={limit}"
            bounds.append(n)
        return bounds, counted, problems

    def validate(self, texts: Sequence[str], *, allow_empty: bool = False) -> tuple[list[int], set[int]]:
        """:meth:`check`, raising InvalidRowsError (nothing sent, nothing paid) if any text is refused."""
        bounds, counted, problems = self.check(texts, allow_empty=allow_empty)
        if problems:
            shown = "; ".join(f"#{i}: {why}" for i, why in list(problems.items())[:5])
            raise InvalidRowsError(
                f"{len(problems)} of {len(texts)} texts cannot be sent to {self.model}: {shown}",
                hint="drop empty texts before embedding; for long texts pass on_too_long='truncate' "
                "or split them into chunks",
                positions=sorted(problems),
            )
        return bounds, counted

    def fit(self, text: str, bound: int) -> tuple[str, int, bool]:
        """``text`` cut to the limit if its (exact) ``bound`` exceeds it: (text, tokens, was cut)."""
        if self.max_input_tokens and bound > self.max_input_tokens:
            cut = self.counter.truncate(text, self.max_input_tokens)
            return cut, self.counter.count(cut), True
        return text, bound, False

    def fit_all(self, texts: Sequence[str], *, allow_empty: bool = False) -> tuple[list[str], int]:
        """Validate ``texts`` and return them as the model would read them, and how many were cut."""
        bounds, _counted = self.validate(texts, allow_empty=allow_empty)
        out: list[str] = []
        cut = 0
        for text, bound in zip(texts, bounds, strict=True):
            fitted, _n, was_cut = self.fit(text, bound)
            out.append(fitted)
            cut += was_cut
        return out, cut

    def billed(self, estimate: int) -> int:
        """A token estimate as billed: capped at the limit when long texts are truncated."""
        limit = self.max_input_tokens if self.on_too_long == "truncate" else None
        return min(estimate, limit) if limit else estimate
