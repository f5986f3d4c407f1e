"""Texts of the points in a sink, found again through the ledger: for re-embedding and paired samples.

A sink stores vectors, not (usually) texts. The ledger knows each point's
source and key, so a migration reads the text back from the source table —
its location is the source name (``delta:///abs/path``, ``parquet:///...``)
or what the caller passes — or, when the points were written with
``store_text=True``, from the point payloads. Which columns hold key and text
is recorded with the run that wrote the points.

A paired sample keeps only points whose text still hashes to what the ledger
and the payload say the vector was made from: a row edited since it was
embedded would pair a new text with an old vector and teach the adapter noise.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import ConfigError, SourceError
from .identity import content_hashes
from .ledger import Ledger
from .sinks.base import PAYLOAD_HASH, PAYLOAD_KEY, PAYLOAD_MODEL, PAYLOAD_SOURCE, PAYLOAD_TEXT, Sink
from .sources import open_source

log = logging.getLogger(__name__)

_LOCATION_PREFIXES = ("delta://", "delta+", "parquet://", "parquet+")
_FETCH_CHUNK = 2048
KEY_FIELD = "key"
TEXT_FIELD = "text"


@dataclass(frozen=True)
class SourceSpec:
    """How to read the texts of one source of a sink's points."""

    name: str  # the source name recorded in the ledger (part of every point id)
    how: Literal["location", "payload"]
    location: Any = None  # path/URI or frame for open_source (how == "location")
    text_col: str = TEXT_FIELD
    key_col: str = KEY_FIELD
    filter: str | None = None  # the row filter the points were embedded with
    store_text: bool = False  # the points carry their text in the payload

    @property
    def is_delta(self) -> bool:
        return isinstance(self.location, str) and self.location.startswith(("delta://", "delta+"))

    def describe(self) -> dict[str, Any]:
        shown = (
            self.location if isinstance(self.location, str | os.PathLike) else type(self.location).__name__
        )
        return {
            "source": self.name,
            "how": self.how,
            "location": None if shown is None else str(shown),
            "text_col": self.text_col,
            "key_col": self.key_col,
            "filter": self.filter,
            "store_text": self.store_text,
        }


def resolve_sources(
    sink: Sink,
    ledger: Ledger,
    *,
    ledger_uri: str,
    source: Any = None,
    text_col: str | None = None,
    key_col: str | None = None,
) -> list[SourceSpec]:
    """Work out, for every source with live points in the sink, where its texts can be read.

    ``source`` overrides the location: one frame/path when the sink has one
    source, or a mapping ``{source name: frame/path}``.
    """
    names = list(ledger.live_sources(ledger_uri))
    given: Mapping[str, Any]
    if source is None:
        given = {}
    elif isinstance(source, Mapping):
        unknown = sorted(set(source) - set(names))
        if unknown:
            raise ConfigError(
                f"source names {unknown} have no live points in {ledger_uri}",
                hint=f"the ledger knows these sources of the sink: {names}",
            )
        given = source
    elif len(names) == 1:
        given = {names[0]: source}
    else:
        raise ConfigError(
            f"{ledger_uri} holds points of {len(names)} sources, so one source= is ambiguous",
            hint="pass source={'<source name>': <frame or path>, ...}, names as recorded: "
            + ", ".join(names),
        )
    specs = []
    for name in names:
        params = ledger.last_write_params(ledger_uri, name) or {}
        stored = _stores_text(sink, ledger, ledger_uri, name)
        location = given.get(name)
        if location is None and name.startswith(_LOCATION_PREFIXES):
            location = name
        if location is None:
            if not stored:
                raise SourceError(
                    f"cannot read the texts of source {name!r}: it names no table drift can open, and its "
                    f"points in {ledger_uri} store no text",
                    hint="pass source=<the data> (a frame, or the Delta/Parquet path) for it, or embed with "
                    "store_text=True next time",
                    source=name,
                )
            specs.append(SourceSpec(name=name, how="payload", store_text=True))
            continue
        tcol, kcol = text_col or params.get("text_col"), key_col or params.get("key_col")
        if not tcol or not kcol:
            raise ConfigError(
                f"the ledger does not say which columns of {name!r} hold the key and text",
                hint="pass {opt:text_col} and {opt:key_col}",
            )
        specs.append(
            SourceSpec(
                name=name,
                how="location",
                location=location,
                text_col=tcol,
                key_col=kcol,
                filter=params.get("filter"),
                store_text=stored,
            )
        )
    return specs


def _stores_text(sink: Sink, ledger: Ledger, ledger_uri: str, source: str) -> bool:
    """Whether the points of ``source`` keep their text in the payload (judged by one live point)."""
    for chunk in ledger.live_points(ledger_uri, source=source, chunk=1):
        found = sink.fetch([chunk[0]["point_id"]])
        point = found.get(chunk[0]["point_id"])
        return point is not None and isinstance(point.payload.get(PAYLOAD_TEXT), str)
    return False


def payload_reader(sink: Sink, source: str, *, batch_size: int = 4096) -> pa.RecordBatchReader:
    """Stream (key, text) of the points of ``source`` that store their text, for ``embed``."""
    schema = pa.schema([pa.field(KEY_FIELD, pa.string()), pa.field(TEXT_FIELD, pa.string())])

    def batches() -> Iterator[pa.RecordBatch]:
        for page in sink.scroll(batch_size=batch_size):
            keys, texts = [], []
            for p in page:
                text = p.payload.get(PAYLOAD_TEXT)
                if p.payload.get(PAYLOAD_SOURCE) == source and isinstance(text, str):
                    keys.append(str(p.payload.get(PAYLOAD_KEY)))
                    texts.append(text)
            if keys:
                yield pa.record_batch(
                    [pa.array(keys, pa.string()), pa.array(texts, pa.string())], schema=schema
                )

    return pa.RecordBatchReader.from_batches(schema, batches())


def texts_by_key(spec: SourceSpec, keys: set[str], *, batch_size: int = 50_000) -> dict[str, str]:
    """Read the current text of each wanted key from the source (one streaming pass, stops early)."""
    if not keys:
        return {}
    wanted = pa.array(sorted(keys), pa.string())
    out: dict[str, str] = {}
    with open_source(
        spec.location, source=spec.name, key_col=spec.key_col, text_col=spec.text_col, batch_size=batch_size
    ) as src:
        for batch in src.batches():
            hit = batch.filter(pc.is_in(batch.column(KEY_FIELD), value_set=wanted))
            for k, t in zip(
                hit.column(KEY_FIELD).to_pylist(), hit.column(TEXT_FIELD).to_pylist(), strict=True
            ):
                if t is not None:
                    out[k] = t
            if len(out) == len(keys):
                break
    return out


@dataclass
class PairedSample:
    """Texts of sampled points with the vectors the sink holds for them (row i ↔ row i)."""

    point_ids: list[str]
    texts: list[str]
    old_vectors: np.ndarray
    n_drawn: int = 0  # provenance rows drawn from the ledger
    n_no_text: int = 0  # the source no longer has the key (or its text is null)
    n_changed: int = 0  # the text changed since its vector was written
    n_no_vector: int = 0  # the sink lost the point, or holds another text/model for it

    def __len__(self) -> int:
        return len(self.point_ids)

    def counts(self) -> dict[str, int]:
        return {
            "drawn": self.n_drawn,
            "paired": len(self),
            "no_text": self.n_no_text,
            "text_changed": self.n_changed,
            "no_vector": self.n_no_vector,
        }


def sample_pairs(
    sink: Sink,
    ledger: Ledger,
    *,
    ledger_uri: str,
    specs: list[SourceSpec],
    model: str,
    n: int,
    seed: int = 0,
) -> PairedSample:
    """Draw ~``n`` live points of the sink and pair each current text with its stored ``model`` vector."""
    drawn = ledger.sample_points(ledger_uri, n, seed=seed)
    rows = [r for r in drawn if r["model"] == model]
    by_name = {s.name: s for s in specs}
    stored: dict[str, Any] = {}
    for lo in range(0, len(rows), _FETCH_CHUNK):
        stored.update(sink.fetch([r["point_id"] for r in rows[lo : lo + _FETCH_CHUNK]], with_vectors=True))
    texts: dict[str, str] = {}  # point id -> text
    for name in {r["source"] for r in rows}:
        spec = by_name.get(name)
        mine = [r for r in rows if r["source"] == name]
        if spec is None:
            continue
        if spec.how == "payload":
            for r in mine:
                point = stored.get(r["point_id"])
                text = point.payload.get(PAYLOAD_TEXT) if point is not None else None
                if isinstance(text, str):
                    texts[r["point_id"]] = text
        else:
            found = texts_by_key(spec, {r["source_key"] for r in mine})
            texts.update({r["point_id"]: found[r["source_key"]] for r in mine if r["source_key"] in found})
    sample = PairedSample(
        point_ids=[], texts=[], old_vectors=np.zeros((0, 0), np.float32), n_drawn=len(drawn)
    )
    sample.n_no_vector = len(drawn) - len(rows)
    keep_texts: list[str] = []
    keep_rows: list[dict[str, Any]] = []
    for r in rows:
        if r["point_id"] in texts:
            keep_rows.append(r)
            keep_texts.append(texts[r["point_id"]])
        else:
            sample.n_no_text += 1
    vectors = []
    for r, text, h in zip(keep_rows, keep_texts, content_hashes(keep_texts), strict=True):
        point = stored.get(r["point_id"])
        if h != r["content_hash"]:
            sample.n_changed += 1
        elif (
            point is None
            or point.vector is None
            or point.payload.get(PAYLOAD_HASH) != h
            or point.payload.get(PAYLOAD_MODEL) != model
        ):
            sample.n_no_vector += 1
        else:
            sample.point_ids.append(r["point_id"])
            sample.texts.append(text)
            vectors.append(point.vector)
    dim = sink.dimension() or 0
    sample.old_vectors = np.vstack(vectors).astype(np.float32) if vectors else np.zeros((0, dim), np.float32)
    if sample.n_changed or sample.n_no_text or sample.n_no_vector:
        log.info("paired sample of %s: %s", ledger_uri, sample.counts())
    return sample
