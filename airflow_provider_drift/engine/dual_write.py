"""Dual-write migration: build a new collection with the new model beside the old one, then cut over.

States (in the ledger's ``migrations`` table)::

    start ──> building ──> ready ──cutover──> cut_over ──finish──> finished
                 │           │                    │
                 └───────────┴──────rollback──────┴──> rolled_back

* **Serving name.** Readers query an *alias* (a Qdrant alias, a Postgres
  view). ``start`` points it at the old collection if it does not exist
  yet; ``cutover`` switches it to the new collection in one atomic step;
  ``rollback`` switches it back. Writers (embed, watch) keep addressing the
  collections by their real names.
* **Building and catching up.** ``start`` and ``sync`` run ``embed()`` from
  the source into the new collection (dedup: a re-run embeds only rows whose
  text changed, ``delete_missing``: rows gone from the source are removed);
  a Delta source whose old collection is watched gets a watermark on the new
  one too, after which ``sync`` applies only the change feed.
* **Following.** While the migration is open, every ``watch()`` and
  ``embed()`` into the old collection applies the same rows to the new one
  (:mod:`.migration_targets`), so it can be cut over right after either.
* **Crash safety.** The sink is changed before the ledger: a crash between
  an alias switch and the state update leaves the step to be re-run, and
  every step is idempotent.
* **Cutover refuses** (MigrationError, nothing changed) unless the build
  finished, the new collection holds exactly what the ledger recorded, and
  no write to the old collection happened after the new one last caught up.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from .embed import embed
from .errors import ConfigError, MigrationError
from .ledger import Ledger
from .ledger.migrations import OPEN_STATES
from .migration_targets import STRATEGY, MigrationTarget, open_migration_targets
from .pairs import SourceSpec, payload_reader, resolve_sources
from .providers.base import EmbeddingProvider
from .records import MigrateRun, WatchRun
from .sinks.base import Sink
from .vectorize import add_cost

log = logging.getLogger(__name__)

Action = Literal["start", "sync", "cutover", "rollback", "finish"]
_MAX_NAME = 63  # PostgreSQL's identifier limit; Qdrant allows 255


def default_target_name(collection: str, to_model: str) -> str:
    """``<base>__<model slug>``: ``docs`` → ``docs__openai_text-embedding-3-large`` (≤ 63 bytes)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", to_model).strip("_.-") or "model"
    name = f"{_base(collection)}__{slug}"
    if len(name) > _MAX_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = f"{name[: _MAX_NAME - 9]}_{digest}"
    return name


def default_alias(collection: str) -> str:
    """``<base>_live``: the serving name readers query (``docs`` and ``docs__m2`` share ``docs_live``)."""
    return f"{_base(collection)}_live"


def _base(collection: str) -> str:
    return collection.split("__", 1)[0] or collection


def watch_migration_targets(
    source_table: str,
    *,
    sink: Sink,
    ledger: Ledger,
    text_col: str,
    key_col: str,
    shadow_mode: bool = False,
    provider_options: dict[str, Any] | None = None,
    **watch_options: Any,
) -> list[WatchRun]:
    """Apply the same change feed to every open migration's new collection, with its own model.

    ``watch()`` calls it itself after the old collection's window succeeded;
    call it directly only to catch the new collections up without watching the
    old one. Takes watch's arguments (``source``, ``until_version``,
    ``interval``, ``batch_size``, ``on_invalid``, ``store_text``, ``spark``,
    ``run_context``, ...). Each new collection has its own watermark, so a
    failure here never moves the old one's; the next watch retries it.
    """
    return [
        watch_migration_target(
            t,
            source_table,
            sink=sink,
            ledger=ledger,
            text_col=text_col,
            key_col=key_col,
            shadow_mode=shadow_mode,
            provider_options=provider_options,
            **watch_options,
        )
        for t in open_migration_targets(sink, ledger=ledger)
    ]


def watch_migration_target(
    target: MigrationTarget,
    source_table: str,
    *,
    sink: Sink,
    ledger: Ledger,
    text_col: str,
    key_col: str,
    shadow_mode: bool = False,
    provider_options: dict[str, Any] | None = None,
    **watch_options: Any,
) -> WatchRun:
    """Watch ``source_table`` into one migration's new collection, opened through ``sink``'s connection."""
    from .providers import get_provider
    from .watch import watch

    provider = get_provider(
        target.to_model, shadow_mode=shadow_mode, dim=target.dim, options=provider_options
    )
    with sink.with_collection(target.collection) as new_sink:
        return watch(
            source_table,
            text_col=text_col,
            key_col=key_col,
            sink=new_sink,
            model=target.to_model,
            ledger=ledger,
            provider=provider,
            shadow_mode=shadow_mode,
            distance=target.distance,
            **watch_options,
        )


@dataclass
class DualWrite:
    """One dual-write step over an open ledger and sink handles (see :func:`..migrate.migrate`)."""

    ledger: Ledger
    given: Sink
    run: MigrateRun
    provider_factory: Callable[[int | None], EmbeddingProvider]
    source: Any = None
    text_col: str | None = None
    key_col: str | None = None
    target_collection: str | None = None
    alias: str | None = None
    drop: bool = False
    batch_size: int = 4096
    run_context: dict[str, Any] | None = None

    # --- finding the migration -------------------------------------------------------------------

    def find(self, from_model: str | None, to_model: str | None) -> dict[str, Any] | None:
        """The newest dual-write migration that involves the given sink (old, new or alias)."""
        uri = self.given.uri
        for m in self.ledger.migrations(None):
            if m["strategy"] != STRATEGY:
                continue
            if uri not in (m["sink"], m["target_sink"], m["details"].get("alias_uri")):
                continue
            if (from_model and m["from_model"] != from_model) or (to_model and m["to_model"] != to_model):
                continue
            return m
        return None

    @contextmanager
    def _handles(self, m: dict[str, Any]) -> Iterator[tuple[Sink, Sink]]:
        """The old and the new collection through the caller's connection, closed after use."""
        d = m["details"]
        with (
            self.given.with_collection(d["old_collection"]) as old,
            self.given.with_collection(d["target_collection"]) as target,
        ):
            yield old, target

    # --- start / sync ----------------------------------------------------------------------------

    def start(self, from_model: str, to_model: str) -> dict[str, Any]:
        """Create the migration (or resume the open one for these models) and build the new collection."""
        self.given.require("alias", for_what="a dual-write migration (atomic cutover)")
        open_one = self.find(None, None)
        resumable = open_one is not None and open_one["target_sink"] != self.given.uri
        if open_one is not None and resumable and open_one["state"] in OPEN_STATES:
            if (open_one["from_model"], open_one["to_model"]) != (from_model, to_model):
                raise MigrationError(
                    f"{self.given.uri} already has an open migration {open_one['from_model']} -> "
                    f"{open_one['to_model']} ({open_one['state']})",
                    hint="finish or roll back that migration first",
                    migration_id=open_one["migration_id"],
                )
            return self.sync(open_one)
        old, alias = self._old_and_alias()
        known = self.ledger.live_count(old.uri)
        if not known:
            through = self.ledger.live_count(self.given.uri) if self.given.uri != old.uri else 0
            raise MigrationError(
                f"the ledger knows no points in {old.uri}"
                + (
                    f" (its {through:,} points were written through the alias {self.given.collection})"
                    if through
                    else ""
                ),
                hint="migrate a collection drift embedded into (check the sink URI and --ledger); "
                "writers must address the collection by its real name, readers the alias",
            )
        building = self.ledger.open_migrations_into(old.uri)
        if building:
            raise MigrationError(
                f"{old.uri} is the new collection of the open migration {building[0]['migration_id']}",
                hint="finish (or roll back) that migration before migrating its new collection again",
            )
        models = self.ledger.models_in_sink(old.uri)
        if from_model not in models:
            raise MigrationError(
                f"{old.uri} holds vectors of {sorted(models)}, not of {from_model}",
                hint=f"pass from_model={next(iter(models))!r}",
            )
        target_name = self.target_collection or default_target_name(old.collection, to_model)
        if target_name in (old.collection, alias):
            raise ConfigError(
                f"the new collection cannot be named {target_name!r}: that is the old collection or alias",
                hint="pass another target_collection=",
            )
        current = old.resolve_alias(alias)
        if current is not None and current != old.collection:
            raise MigrationError(
                f"the alias {alias} points at {current}, not at the old collection {old.collection}",
                hint="pass alias= naming the alias your readers use for this collection",
            )
        if current is None and alias in old.list_collections():
            raise MigrationError(
                f"cannot use {alias!r} as the serving alias: a collection of that name exists",
                hint="pass alias= with a free name",
            )
        target, alias_handle = old.with_collection(target_name), old.with_collection(alias)
        try:
            provider = self.provider_factory(None)
            distance = old.distance() or "cosine"
            details = {
                "old_collection": old.collection,
                "target_collection": target_name,
                "alias": alias,
                "alias_uri": alias_handle.uri,
                "dim_old": old.dimension(),
                "dim_new": provider.dim,
                "distance": distance,
            }
            mid = self.ledger.create_migration(
                strategy=STRATEGY,
                from_model=from_model,
                to_model=to_model,
                sink=old.uri,
                target_sink=target.uri,
                state="building",
                details=details,
                exclusive=True,
            )
        finally:
            target.close()
            alias_handle.close()
        if current is None:
            old.set_alias(alias, old.collection)  # readers can move to the alias now; it serves the old one
        m = self.ledger.get_migration(mid)
        assert m is not None
        return self.sync(m)

    def _old_and_alias(self) -> tuple[Sink, str]:
        """The old collection behind the given name, and the serving alias."""
        name = self.given.collection
        behind = self.given.resolve_alias(name)
        if behind is not None:
            if self.alias and self.alias != name:
                raise ConfigError(
                    f"{name} is itself an alias (of {behind}); alias={self.alias!r} contradicts it",
                    hint="drop alias=, or give the real collection name as the sink",
                )
            return self.given.with_collection(behind), name
        return self.given, self.alias or default_alias(name)

    def sync(self, m: dict[str, Any]) -> dict[str, Any]:
        """Bring the new collection up to the source; a building migration becomes ready."""
        if m["state"] not in OPEN_STATES:
            raise MigrationError(
                f"migration {m['migration_id']} is {m['state']}: there is nothing to keep in sync",
                hint="start a new migration (action='start')",
            )
        d = m["details"]
        with self._handles(m) as (old, target):
            provider = self.provider_factory(d.get("dim_new"))
            specs = resolve_sources(
                old,
                self.ledger,
                ledger_uri=m["sink"],
                source=self.source,
                text_col=self.text_col,
                key_col=self.key_col,
            )
            for spec in specs:
                self._sync_source(spec, old=old, target=target, provider=provider, m=m)
            target.flush()
        self.run.n_points = self.ledger.live_count(m["target_sink"])
        state = "ready" if m["state"] == "building" else m["state"]
        note = {"run_id": self.run.run_id, "action": "sync", "n_points": self.run.n_points}
        self.run.metrics["sources"] = [s.describe() for s in specs]
        return self.ledger.set_migration_state(m["migration_id"], state, expect=(m["state"],), note=note)

    def _sync_source(
        self, spec: SourceSpec, *, old: Sink, target: Sink, provider: EmbeddingProvider, m: dict[str, Any]
    ) -> None:
        from .watch import watch

        common: dict[str, Any] = {
            "source": spec.name,
            "text_col": spec.text_col,
            "key_col": spec.key_col,
            "model": provider.model,
            "sink": target,
            "ledger": self.ledger,
            "provider": provider,
            "store_text": spec.store_text,
            "batch_size": self.batch_size,
            "run_context": self.run_context,
        }
        runs = self.run.metrics.setdefault("runs", [])
        if spec.is_delta and self.ledger.get_watermark(spec.name, target.uri) is not None:
            w = watch(spec.location, distance=m["details"]["distance"], **common)
            runs.append(
                {"kind": "watch", "run_id": w.run_id, "source": spec.name, "to_version": w.to_version}
            )
            self._add(w.n_embedded, w.tokens, w.cost_usd)
            return
        df = spec.location if spec.how == "location" else payload_reader(old, spec.name)
        e = embed(
            df,
            filter=spec.filter,
            delete_missing=True,
            distance=m["details"]["distance"],
            **common,
        )
        runs.append({"kind": "embed", "run_id": e.run_id, "source": spec.name, "version": e.source_version})
        self._add(e.n_embedded, e.tokens, e.cost_usd)
        watched = self.ledger.get_watermark(spec.name, m["sink"]) is not None
        if spec.is_delta and watched and e.source_version is not None and spec.filter is None:
            # The old collection follows the change feed: so will the new one, from this snapshot on.
            self.ledger.advance_source_versions(target.uri, spec.name, e.source_version)
            self.ledger.set_watermark(spec.name, target.uri, e.source_version, run_id=e.run_id)

    def _add(self, n_embedded: int, tokens: int, cost: float | None) -> None:
        self.run.n_embedded += n_embedded
        self.run.tokens += tokens
        self.run.cost_usd = add_cost(self.run.cost_usd, cost)

    # --- cutover / rollback / finish -------------------------------------------------------------

    def cutover(self, m: dict[str, Any]) -> dict[str, Any]:
        """Switch the alias to the new collection in one step, if the new one is complete and current."""
        if m["state"] == "cut_over":
            return m
        if m["state"] != "ready":
            raise MigrationError(
                f"cannot cut over migration {m['migration_id']}: it is {m['state']}, not ready",
                hint="run action='start' (or 'sync') until it is ready; nothing was changed"
                if m["state"] == "building"
                else "start a new migration; nothing was changed",
                state=m["state"],
            )
        d = m["details"]
        with self._handles(m) as (old, target):
            self._check_complete(m, old, target)
            target.set_alias(d["alias"], d["target_collection"])
        self.run.n_points = self.ledger.live_count(m["target_sink"])
        return self.ledger.set_migration_state(
            m["migration_id"], "cut_over", expect=("ready", "cut_over"), note={"run_id": self.run.run_id}
        )

    def _check_complete(self, m: dict[str, Any], old: Sink, target: Sink) -> None:
        d = m["details"]
        problems = []
        serving = old.resolve_alias(d["alias"])
        if serving not in (d["old_collection"], d["target_collection"]):
            problems.append(f"the alias {d['alias']} points at {serving}, not at the old collection")
        held, recorded = (
            (target.count() if target.dimension() is not None else 0),
            self.ledger.live_count(m["target_sink"]),
        )
        if held != recorded:
            problems.append(f"the new collection holds {held:,} points but the ledger recorded {recorded:,}")
        if target.dimension() != d.get("dim_new"):
            problems.append(
                f"the new collection has dimension {target.dimension()}, expected {d.get('dim_new')}"
            )
        changed, _ = self.ledger.last_write_times(m["sink"])
        _, synced = self.ledger.last_write_times(m["target_sink"])
        if changed is not None and (synced is None or synced < changed):
            problems.append("the old collection changed after the new one last caught up")
        for src, version in self.ledger.watermarks(m["sink"]).items():
            mine = self.ledger.get_watermark(src, m["target_sink"])
            if mine is not None and mine < version:
                problems.append(f"the new collection is at version {mine} of {src}, the old one at {version}")
        if problems:
            raise MigrationError(
                f"cannot cut over migration {m['migration_id']}: " + "; ".join(problems),
                hint="run action='sync' (or watch) to catch up, then cut over again; nothing was changed",
                problems=problems,
            )

    def rollback(self, m: dict[str, Any]) -> dict[str, Any]:
        """Point the alias back at the old collection and close the migration; drop=True drops the new one."""
        if m["state"] == "rolled_back":
            return m
        if m["state"] not in OPEN_STATES:
            raise MigrationError(
                f"cannot roll back migration {m['migration_id']}: it is {m['state']}",
                hint="a finished migration is final; migrate back with a new dual-write migration",
                state=m["state"],
            )
        d = m["details"]
        with self._handles(m) as (old, target):
            if old.resolve_alias(d["alias"]) != d["old_collection"]:
                old.set_alias(d["alias"], d["old_collection"])
            if self.drop:
                self._drop(target, m["target_sink"])
        return self.ledger.set_migration_state(
            m["migration_id"],
            "rolled_back",
            expect=OPEN_STATES,
            note={"run_id": self.run.run_id, "dropped": d["target_collection"] if self.drop else None},
        )

    def finish(self, m: dict[str, Any]) -> dict[str, Any]:
        """Close a cut-over migration; only with drop=True is the old collection deleted."""
        if m["state"] == "finished":
            return m
        if m["state"] != "cut_over":
            raise MigrationError(
                f"cannot finish migration {m['migration_id']}: it is {m['state']}, not cut_over",
                hint="cut over first (action='cutover'); nothing was changed",
                state=m["state"],
            )
        d = m["details"]
        with self._handles(m) as (old, _):
            if old.resolve_alias(d["alias"]) != d["target_collection"]:
                raise MigrationError(
                    f"the alias {d['alias']} no longer points at {d['target_collection']}",
                    hint="cut over again (action='cutover') before finishing; nothing was changed",
                )
            if self.drop:
                self._drop(old, m["sink"])
        self.run.n_points = self.ledger.live_count(m["target_sink"])
        return self.ledger.set_migration_state(
            m["migration_id"],
            "finished",
            expect=("cut_over",),
            note={"run_id": self.run.run_id, "dropped": d["old_collection"] if self.drop else None},
        )

    def _drop(self, sink: Sink, uri: str) -> None:
        """Drop a retired collection, then mark its points deleted in the ledger (sink first)."""
        sink.drop()
        for chunk in self.ledger.live_points(uri):
            self.ledger.record_deletes(uri, [r["point_id"] for r in chunk], run_id=self.run.run_id)
        self.run.metrics["dropped"] = sink.collection
