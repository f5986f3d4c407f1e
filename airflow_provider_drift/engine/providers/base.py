"""The embedding-provider port.

A provider turns texts into vectors for one model. The orchestration hands it
lists of *unique* texts and never more than it can hold in memory; the
provider splits them into API-sized requests itself (input count, token
budget, concurrency) because those limits are the provider's business.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Embeddings:
    """Vectors for a list of texts, in order, with what they cost.

    ``cost_usd`` is None when the model has no known price: callers must
    propagate "unknown", never treat it as zero.
    """

    vectors: np.ndarray  # float32, shape (n, dim)
    tokens: int
    cost_usd: float | None


class EmbeddingProvider(ABC):
    #: full model name, "provider/name"
    model: str
    #: output dimension
    dim: int
    #: True for providers that never call a network or charge money
    is_shadow: bool = False

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> Embeddings:
        """Embed ``texts`` (already deduplicated) and return vectors in the same order."""

    def estimate_tokens(self, texts: Sequence[str]) -> int:
        """Token count estimate for a plan (dry run); providers may do better."""
        return sum(max(1, (len(t.encode("utf-8")) + 3) // 4) for t in texts)

    def price_per_million_tokens(self) -> float | None:
        return 0.0 if self.is_shadow else None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients, threads and models."""
