"""Shadow embeddings: deterministic, offline, free vectors that behave like real ones.

Why not random vectors per text: search, dedup and above all *migration*
must behave as with real models. A shadow vector is made in three steps:

1. **Meaning** (shared by a model *family*): every lower-cased word is hashed
   to 8 signed coordinates of a 128-d space (a sparse random projection, so
   different words are nearly orthogonal), weighted by word length so short
   function words count less, and summed per text: texts that share words
   are near each other. The family then adds word-*pair* features, a fixed
   quadratic form of that sum (``(z @ L) * (z @ R)``).
2. **Model view** (per model): the model adds its own small sparse code for
   every word and for the whole text (it "reads" them a little differently),
   maps the result through a fixed model-seeded layer
   ``tanh(z @ M + b)`` (M: 128 x dim with orthogonal rows; b: anisotropy,
   like the mean vector of real models) and normalises.
3. Nothing else: no per-call randomness, so (model, text, dim) -> vector.

Two models of one family are hence related the way real models are: by a
fixed non-linear transform plus model-specific noise, dimensions possibly
different; a linear adapter between them is good but not perfect (held-out
ARR@10 ~0.73-0.82 vs 0.63 for the real MiniLM/mpnet pair). Two families
share no word codes and their pair features are different quadratic forms
that no linear map can carry across, so an adapter between them scores
ARR@10 ~0.1-0.3 and fails the quality gate (``docs/adapter-evidence.md``).

**Family convention:** the family is the part after ``@`` in the model name
(``shadow/ada@legacy`` is family ``legacy``); a name without ``@`` is family
``common``, so any two plain model names are related. The dimension comes
from the name before ``@`` (a known model) or from an explicit ``dim``.

**Speed:** tokenising and hashing are vectorised over the UTF-8 bytes of a
chunk of texts (no per-word Python) and the codes are one ``bincount``; the
only dense products are 128 x 256 and 128 x dim. ~80-character texts embed
at >100k texts/s at 384-d (dev/bench/bench_adapter.py).

**Stability:** pseudo-random numbers come from a counter-based integer hash,
not numpy's generators, so vectors do not change with the numpy version.
The dense products are exact integer arithmetic in float32 (see
:class:`_Quantised`), so a text's vector is bitwise identical whatever batch
it arrives in and whatever the BLAS thread count; across machines only
LAPACK/libm rounding (QR of the seeded matrices, ``tanh``) can differ.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError, ProviderError
from ..models import model_info, resolve_dim
from .base import EmbeddingProvider, Embeddings
from .input_limits import InputLimits, OnTooLong
from .tokens import TokenCounter, TokenizerName, get_counter

#: version of the vector recipe; bump when vectors for a (model, text) change
SHADOW_SCHEME = 2
#: the widest shadow vector: as wide as any sink holds (Qdrant's 65,536)
MAX_SHADOW_DIM = 65536
#: model prefixes whose real provider refuses over-long inputs (local models truncate silently)
_API_PROVIDERS = {"openai"}

_MEANING = 128  # meaning-space size; a power of two (7 bits per coordinate below)
_CODE = 8  # signed coordinates per word / text code: one 64-bit hash gives 8 x (7 bits + sign)
_MODEL_WORD = 0.05  # weight of a model's own word code, relative to the family's
_MODEL_TEXT = 0.05  # weight of a model's own whole-text code (after the words are normalised)
_FAMILY_PAIRS = 1.0  # weight of a family's word-pair features, relative to its word codes
_SHARPNESS = 1.0  # tanh gain: 0 would make models linear images of each other
_BIAS = 0.5  # spread of the per-model offset inside tanh (anisotropy, like real models)
_CHUNK = 256  # texts per sparse step: temporaries stay in cache and off the page-fault path
_BLOCK = 4096  # texts per dense step: big enough for multi-threaded BLAS to pay off

_U64 = np.uint64
_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _splitmix(x: np.ndarray) -> np.ndarray:
    """Mix uint64 values in place (splitmix64 finaliser): a fast, well-spread hash."""
    x ^= x >> _U64(30)
    x *= _U64(0xBF58476D1CE4E5B9)
    x ^= x >> _U64(27)
    x *= _U64(0x94D049BB133111EB)
    x ^= x >> _U64(31)
    return x


def _stream(seed: int, n: int) -> np.ndarray:
    """``n`` pseudo-random uint64 from ``seed``: numpy-version independent."""
    counter = np.arange(1, n + 1, dtype=_U64)
    counter *= _U64(_GOLDEN)
    counter += _U64(seed & _MASK64)
    return _splitmix(counter)


def _uniform(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """Float32 values uniform on [-sqrt(3), sqrt(3)) (mean 0, variance 1)."""
    bits = _stream(seed, int(np.prod(shape))) >> _U64(11)  # 53 bits
    unit = bits.astype(np.float64) * (1.0 / (1 << 53))
    return ((unit * 2.0 - 1.0) * np.sqrt(3.0)).astype(np.float32).reshape(shape)


def _seed(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "little")


_POSITION = _stream(_seed("shadow-position"), 64) | _U64(1)  # odd multipliers per byte position
_WORD_LEN = _U64(_seed("shadow-length") | 1)
_IS_WORD = np.zeros(256, dtype=bool)
_IS_WORD[np.frombuffer(b"abcdefghijklmnopqrstuvwxyz0123456789_", dtype=np.uint8)] = True
_IS_WORD[128:] = True  # bytes of non-ASCII characters: letters in most scripts
_ASCII_LOWER = np.arange(256, dtype=np.uint8)
_ASCII_LOWER[65:91] += 32
# Short words are mostly function words: they count less (no stop list needed).
_LENGTH_WEIGHT = np.array([0.0, 0.2, 0.3, 0.45, 0.7] + [1.0] * 60, dtype=np.float64)
_BYTE_COORD = (np.arange(256) & (_MEANING - 1)).astype(np.intp)
_BYTE_SIGN = np.where(np.arange(256) < 128, 1.0, -1.0)
_CODE_SCALE = 1.0 / np.sqrt(_CODE)


def shadow_family(model: str) -> str:
    """The family of a shadow model: the part after ``@``, else ``common``."""
    return model.rpartition("@")[2] if "@" in model else "common"


class _Quantised(NamedTuple):
    """A 128-row matrix rounded to integers in [-127, 127], times ``scale``.

    With inputs also rounded to 8 bits (see :meth:`apply`), every product and
    partial sum is an integer below 2**24, so float32 GEMM is *exact*: the
    result is bitwise the same whatever the BLAS, its thread count, or the
    row's position in the batch. (Plain float32 GEMM differs in the last bit
    between batch shapes.) The 8-bit rounding moves an input row by ~1% of
    its length (cosine with the unrounded row ~0.99997).
    """

    ints: np.ndarray  # float32 holding integers
    scale: float

    @classmethod
    def of(cls, matrix: np.ndarray) -> _Quantised:
        scale = float(np.abs(matrix).max()) / 127.0
        ints = np.rint(matrix / scale).astype(np.float32)
        ints.setflags(write=False)
        return cls(ints, scale)

    def apply(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``x @ matrix`` for float32 rows ``x`` (128 columns), each row rounded to 8 bits first."""
        row_scale = 127.0 / np.maximum(np.abs(x).max(axis=1, keepdims=True), 1e-30)
        result = np.matmul(np.rint(x * row_scale), self.ints, out=out)
        result *= (np.float32(self.scale) / row_scale).astype(np.float32)
        return result


def _orthogonal(seed: int, rows: int, cols: int) -> np.ndarray:
    """A rows x cols matrix with orthonormal rows or columns, scaled to unit-variance entries."""
    raw = _uniform(seed, (max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(raw.astype(np.float64))
    q *= np.sign(np.diag(r))  # make the factorisation unique
    return (q if rows >= cols else q.T) * np.sqrt(max(rows, cols))


@lru_cache(maxsize=32)
def _family_warp(family: str) -> tuple[int, _Quantised]:
    """(seed, [L | R]) of a family: word codes come from the seed, word-pair features from L and R."""
    seed = _seed("shadow-family", family)
    left = _orthogonal(_seed("shadow-pairs-left", family), _MEANING, _MEANING)
    right = _orthogonal(_seed("shadow-pairs-right", family), _MEANING, _MEANING)
    return seed, _Quantised.of(np.concatenate([left, right], axis=1))


@lru_cache(maxsize=32)
def _model_layer(model: str, dim: int) -> tuple[int, _Quantised, np.ndarray]:
    """(seed, M, b) of a model's layer; M (128 x dim) is orthogonal up to a scale.

    Orthogonal so that the layer alone would keep the meaning space's cosine
    geometry: models then disagree about neighbours only through ``tanh``
    and their own word/text codes, which is what the constants above tune.
    Entries have unit variance, so ``z @ M`` is ~unit scale per coordinate.
    """
    seed = _seed("shadow-model", model)
    weight = _Quantised.of(_orthogonal(_seed("shadow-layer", model, str(dim)), _MEANING, dim))
    bias = _uniform(_seed("shadow-bias", model, str(dim)), (dim,)) * np.float32(_BIAS)
    bias.setflags(write=False)
    return seed, weight, bias


class _Tokens(NamedTuple):
    word_hash: np.ndarray  # uint64 per word
    word_weight: np.ndarray  # float64 per word
    word_text: np.ndarray  # index of the word's text in the chunk
    text_hash: np.ndarray  # uint64 per text (case- and punctuation-sensitive)


def _utf8(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(CRC-32 of each text, lower-cased UTF-8 bytes concatenated, byte offsets) of ``texts``."""
    try:
        joined = "".join(texts)
    except TypeError as exc:
        raise ProviderError(
            "shadow embedding needs str texts", hint="convert the text column to strings first"
        ) from exc
    if joined.isascii():  # one byte per character: str lengths are byte offsets
        encoded: list[bytes] = list(map(str.encode, texts))
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        lower = _ASCII_LOWER[np.frombuffer(joined.encode("ascii"), dtype=np.uint8)]
    else:
        try:
            encoded = [t.encode("utf-8") for t in texts]
            lowered = [t.lower().encode("utf-8") for t in texts]
        except UnicodeEncodeError as exc:
            raise ProviderError(
                "a text is not valid Unicode (lone surrogate)", hint="clean the text column"
            ) from exc
        lower = np.frombuffer(b"".join(lowered), dtype=np.uint8)
        lengths = np.fromiter(map(len, lowered), dtype=np.int64, count=len(texts))
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    crc = np.fromiter(map(zlib.crc32, encoded), dtype=_U64, count=len(texts))
    return crc, lower, offsets


def _positional_hash(data: np.ndarray, starts: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Sum of (byte+1) * odd constant per position, per segment (wraps mod 2**64)."""
    prod = data.astype(_U64)
    prod += _U64(1)
    prod *= _POSITION[position & 63]
    return np.add.reduceat(prod, starts)


def _tokenise(texts: Sequence[str]) -> _Tokens:
    raw_crc, lower, offsets = _utf8(texts)
    n = len(texts)
    nonempty = offsets[:-1][np.diff(offsets) > 0]
    # words: maximal runs of word bytes inside one text
    is_word = _IS_WORD[lower]
    start = is_word.copy()
    start[1:] &= ~is_word[:-1]
    start[nonempty] = is_word[nonempty]
    word_bytes = np.flatnonzero(is_word)
    first = start[word_bytes]
    word_starts = np.flatnonzero(first)  # index into word_bytes
    text_hash = raw_crc ^ (np.diff(offsets).astype(_U64) << _U64(32))
    if word_starts.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return _Tokens(empty.astype(_U64), empty.astype(np.float64), empty, _splitmix(text_hash))
    word_of_byte = np.cumsum(first) - 1
    position = np.arange(word_bytes.size) - word_starts[word_of_byte]
    word_hash = _positional_hash(lower[word_bytes], word_starts, position)
    word_len = np.diff(np.append(word_starts, word_bytes.size))
    word_hash ^= word_len.astype(_U64) * _WORD_LEN
    word_text = np.searchsorted(offsets, word_bytes[word_starts], side="right") - 1
    weight = _LENGTH_WEIGHT[np.minimum(word_len, _LENGTH_WEIGHT.size - 1)]
    # the whole text: its CRC-32 and length, plus its word sequence (order-sensitive)
    counts = np.bincount(word_text, minlength=n)
    with_words = np.flatnonzero(counts)
    first_word = np.cumsum(counts) - counts
    rank = np.arange(word_hash.size) - first_word[word_text]
    text_hash[with_words] ^= np.add.reduceat(
        _splitmix(word_hash.copy()) * _POSITION[rank & 63], first_word[with_words]
    )
    return _Tokens(word_hash, weight, word_text, _splitmix(text_hash))


def _codes(texts: Sequence[str], family_seed: int, model_seed: int) -> np.ndarray:
    """(3, n, 128) sparse codes: family word codes, the model's word codes, the model's text code.

    Each hash gives 8 signed coordinates: the 8 bytes of ``mix(hash ^ seed)``,
    low 7 bits the coordinate, high bit the sign. ``bincount`` adds in input
    order, so a text's codes never depend on the other texts in the chunk.
    """
    n = len(texts)
    tokens = _tokenise(texts)
    plane = n * _MEANING
    word_rows = tokens.word_text * _MEANING
    weight = tokens.word_weight * _CODE_SCALE
    parts = [
        (tokens.word_hash, family_seed, word_rows, weight),
        (tokens.word_hash, model_seed, word_rows + plane, weight),
        (tokens.text_hash, model_seed, np.arange(n) * _MEANING + 2 * plane, np.full(n, _CODE_SCALE)),
    ]
    flats, values = [], []
    for hashes, seed, rows, w in parts:
        code = _splitmix(hashes ^ _U64(seed)).astype("<u8", copy=False).view(np.uint8).reshape(-1, _CODE)
        flats.append((_BYTE_COORD[code] + rows[:, None]).ravel())
        values.append((_BYTE_SIGN[code] * w[:, None]).ravel())
    summed = np.bincount(np.concatenate(flats), np.concatenate(values), minlength=3 * plane)
    return summed.reshape(3, n, _MEANING)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x /= np.maximum(np.sqrt(np.einsum("ij,ij->i", x, x)), 1e-12)[:, None]
    return x


def shadow_vectors(model: str, texts: Sequence[str], dim: int) -> np.ndarray:
    """Unit float32 vectors for ``texts`` as shadow model ``model`` of size ``dim`` would give.

    Sparse work runs on small chunks (cache-resident temporaries); the dense
    steps run on blocks big enough for multi-threaded BLAS to pay off.
    """
    out = np.empty((len(texts), dim), dtype=np.float32)
    family_seed, pair_maps = _family_warp(shadow_family(model))
    model_seed, layer, bias = _model_layer(model, dim)
    for begin in range(0, len(texts), _BLOCK):
        block = texts[begin : begin + _BLOCK]
        codes = np.empty((3, len(block), _MEANING), dtype=np.float32)
        for lo in range(0, len(block), _CHUNK):
            codes[:, lo : lo + _CHUNK] = _codes(block[lo : lo + _CHUNK], family_seed, model_seed)
        words, own, whole = (_unit_rows(c) for c in codes)
        # the family's word-pair features: shared by its models, out of reach of a linear map
        # from another family (whose pair features are other quadratic forms)
        projected = pair_maps.apply(words)
        pairs = _unit_rows(np.multiply(projected[:, :_MEANING], projected[:, _MEANING:]))
        z = words
        z += _FAMILY_PAIRS * pairs
        _unit_rows(z)
        z += _MODEL_WORD * own  # the model's own reading of each word ...
        z += _MODEL_TEXT * whole  # ... and of the whole text (never 0, so z is never 0)
        pre = layer.apply(_unit_rows(z), out=out[begin : begin + len(block)])
        pre *= np.float32(_SHARPNESS)
        pre += bias
        np.tanh(pre, out=pre)
        _unit_rows(pre)
    return out


class ShadowProvider(EmbeddingProvider):
    """Deterministic vectors from (model, text); no network, zero cost.

    Shadowing a model the engine knows from an API (``openai/...``), it
    applies that model's input limits (:class:`InputLimits`): a text the real
    API would refuse fails here too, and ``on_too_long="truncate"`` embeds the
    prefix the real provider would send. A shadow-only name has no limit.
    """

    is_shadow = True

    def __init__(
        self,
        model: str,
        *,
        dim: int | None = None,
        on_too_long: OnTooLong = "error",
        max_input_tokens: int | None = None,
        tokenizer: TokenizerName = "auto",
    ) -> None:
        self.model = model
        shadowed = model.partition("@")[0]
        self.dim = resolve_dim(shadowed, dim)
        if not 0 < self.dim <= MAX_SHADOW_DIM:
            raise ConfigError(
                f"invalid vector dimension {self.dim} for shadow model {model}",
                hint=f"use 1 to {MAX_SHADOW_DIM:,} dimensions",
            )
        self.limits: InputLimits | None = None
        if shadowed.partition("/")[0] in _API_PROVIDERS or max_input_tokens is not None:
            self.limits = InputLimits.for_model(
                shadowed, on_too_long=on_too_long, max_input_tokens=max_input_tokens, tokenizer=tokenizer
            )
        self.truncated = 0  # texts cut to the shadowed model's limit, as the real provider would
        info = model_info(shadowed)
        # Count as the real provider bills: a shadow run's tokens (and the cost they imply) are then
        # the figures of the real run it stands in for, and equal a real dry run's plan.
        counter = get_counter("auto", model_tokenizer=info.tokenizer) if info and info.tokenizer else None
        self._counter: TokenCounter | None = counter if counter is not None and counter.exact else None

    def embed(self, texts: Sequence[str]) -> Embeddings:
        if self.limits is not None:
            # pipelines drop blank texts before a provider sees them; the length limit is the point here
            texts, cut = self.limits.fit_all(texts, allow_empty=True)
            self.truncated += cut
        vectors = shadow_vectors(self.model, texts, self.dim)
        return Embeddings(vectors=vectors, tokens=self.estimate_tokens(texts), cost_usd=0.0)

    def estimate_tokens(self, texts: Sequence[str]) -> int:
        """The real provider's count: its tokenizer where it runs offline, else a token per 4 UTF-8 bytes."""
        if self._counter is not None:
            per_text = np.fromiter(map(self._counter.count, texts), dtype=np.int64, count=len(texts))
        else:
            lengths = np.fromiter(map(len, map(str.encode, texts)), dtype=np.int64, count=len(texts))
            per_text = np.maximum(1, (lengths + 3) // 4)
        if self.limits is not None and self.limits.on_too_long == "truncate" and self.limits.max_input_tokens:
            per_text = np.minimum(per_text, self.limits.max_input_tokens)
        return int(per_text.sum())
