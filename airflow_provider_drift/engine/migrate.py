"""migrate(): move a vector collection to a new embedding model — rebuild, adapt, or just measure.

Strategies (see docs/migration.md):

* ``dual-write`` — build a new collection with the new model beside the old
  one, keep it caught up, cut readers over atomically through an alias,
  roll back or finish (:mod:`.dual_write`). Steps are chosen by ``action``.
* ``drift-adapter`` — embed a paired sample with the new model (the old
  vectors are the ones the index holds), fit a map from the new space into
  the old one (:mod:`.adapter`), measure it on held-out pairs, and store it
  only if it passes the quality gate. The index is untouched; queries go
  through :func:`.query.nearest` with the adapter.
* ``shadow-eval`` — on a sample of the sink's own texts, measure how the new
  model's neighbours compare with the old model's, and how much an adapter
  recovers; change nothing.

Every call is a ``migrate`` run in the ledger. Dual-write runs record no
cost of their own: the ``embed``/``watch`` runs they start carry it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, Literal, get_args

from .dual_write import Action, DualWrite, watch_migration_targets
from .embed import DEFAULT_BATCH_SIZE
from .errors import ConfigError, DriftError, MigrationError
from .handles import ledger_for, sink_for
from .ledger import Ledger
from .migration_targets import MigrationTarget, open_migration_targets
from .paired_strategies import run_drift_adapter, run_shadow_eval
from .pairs import resolve_sources, sample_pairs
from .providers import EmbeddingProvider, get_provider
from .recorded import RunStart, recorded_run
from .records import MigrateRun
from .sinks.base import Sink

Strategy = Literal["dual-write", "drift-adapter", "shadow-eval"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
ACTIONS: tuple[str, ...] = get_args(Action)
#: paired texts for fitting an adapter; a few thousand give a stable fit and a ±0.01 measure
DEFAULT_ADAPTER_SAMPLE = 5000
#: texts for a shadow evaluation (each is a query against all the others)
DEFAULT_EVAL_SAMPLE = 1000

__all__ = [
    "ACTIONS",
    "STRATEGIES",
    "MigrationTarget",
    "Strategy",
    "cutover",
    "finish",
    "migrate",
    "open_migration_targets",
    "rollback",
    "watch_migration_targets",
]


def migrate(
    from_model: str,
    to_model: str,
    sink: str | Sink,
    *,
    strategy: Strategy,
    action: Action = "start",
    source: Any = None,
    text_col: str | None = None,
    key_col: str | None = None,
    sample_size: int | None = None,
    threshold: float | None = None,
    k: int = 10,
    seed: int = 0,
    shadow_mode: bool = False,
    ledger: Ledger | str | os.PathLike[str] | None = None,
    target_collection: str | None = None,
    alias: str | None = None,
    drop: bool = False,
    dim: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    adapter_dir: str | os.PathLike[str] | None = None,
    provider: EmbeddingProvider | None = None,
    provider_options: dict[str, Any] | None = None,
    sink_options: dict[str, Any] | None = None,
    run_context: dict[str, Any] | None = None,
) -> MigrateRun:
    """Run one migration step from ``from_model`` (the sink's) to ``to_model`` and return what happened.

    :param sink: the collection drift embedded with ``from_model`` (its real name, or the
        serving alias of an earlier migration).
    :param action: dual-write only: ``start`` (create or resume the build), ``sync`` (catch up),
        ``cutover`` (switch the alias), ``rollback`` (switch back), ``finish`` (close).
    :param source: where the texts are, when the source name is not a readable location: a
        frame/path, or ``{source name: frame/path}``. Default: the recorded source names.
    :param text_col/key_col: default: what the run that wrote the points recorded.
    :param sample_size: paired texts for ``drift-adapter`` (5000) / texts for ``shadow-eval`` (1000).
    :param threshold: the gate on the ARR@k estimate at the collection's size (test split; default:
        ``adapter.DEFAULT_THRESHOLD``).
    :param target_collection: dual-write: the new collection (default ``<base>__<model>``).
    :param alias: dual-write: the serving alias (default: the sink's name if it is an alias,
        else ``<base>_live``).
    :param drop: ``finish``: drop the old collection; ``rollback``: drop the new one.
    :param dim: the new model's dimension, for models the engine does not know.
    :param adapter_dir: where adapters are stored (default ``$DRIFT_HOME/adapters``).
    """
    started = time.monotonic()
    _check_args(strategy, action, from_model, to_model, sample_size, threshold, k)
    if strategy == "drift-adapter":
        from .adapter import DEFAULT_THRESHOLD

        threshold = DEFAULT_THRESHOLD if threshold is None else threshold
    elif strategy == "shadow-eval" and threshold is None:
        from .adapter import DEFAULT_THRESHOLD

        threshold = DEFAULT_THRESHOLD

    def make_provider(known_dim: int | None) -> EmbeddingProvider:
        if provider is not None:
            return provider
        return get_provider(to_model, shadow_mode=shadow_mode, dim=dim or known_dim, options=provider_options)

    with ExitStack() as stack:
        given = sink_for(sink, stack, sink_options)
        led = ledger_for(ledger, stack)
        run = MigrateRun(
            run_id="",
            strategy=strategy,
            from_model=from_model,
            to_model=to_model,
            sink=given.uri,
            threshold=threshold,
        )
        run.metrics["action"] = action if strategy == "dual-write" else None
        params = {
            "action": action,
            "sample_size": sample_size,
            "threshold": threshold,
            "k": k,
            "seed": seed,
            "shadow_mode": shadow_mode,
            "target_collection": target_collection,
            "alias": alias,
            "drop": drop,
        }
        if strategy == "dual-write":
            dw = DualWrite(
                ledger=led,
                given=given,
                run=run,
                provider_factory=make_provider,
                source=source,
                text_col=text_col,
                key_col=key_col,
                target_collection=target_collection,
                alias=alias,
                drop=drop,
                batch_size=batch_size,
                run_context=run_context,
            )
            return _dual_write_step(dw, action, from_model, to_model, params, run_context, started)
        old, ledger_uri = _known_sink(given, led, from_model)
        try:
            specs = resolve_sources(
                old, led, ledger_uri=ledger_uri, source=source, text_col=text_col, key_col=key_col
            )
            run.sink = ledger_uri
            new_provider = make_provider(None)
            size = sample_size or (
                DEFAULT_ADAPTER_SAMPLE if strategy == "drift-adapter" else DEFAULT_EVAL_SAMPLE
            )

            def body() -> None:
                pairs = sample_pairs(
                    old, led, ledger_uri=ledger_uri, specs=specs, model=from_model, n=size,
                    seed=seed if strategy == "drift-adapter" else seed + 1,
                )  # fmt: skip
                if strategy == "drift-adapter":
                    run_drift_adapter(
                        run, led, pairs, new_provider, k=k, seed=seed, adapter_dir=adapter_dir, old=old
                    )
                else:
                    run_shadow_eval(run, led, pairs, new_provider, old=old, k=k, seed=seed)

            return _recorded(run, led, ledger_uri, params, run_context, started, body)
        finally:
            if old is not given:
                old.close()


def cutover(sink: str | Sink, **options: Any) -> MigrateRun:
    """Switch the serving alias of the sink's open dual-write migration to the new collection."""
    return _step("cutover", sink, **options)


def rollback(sink: str | Sink, *, drop: bool = False, **options: Any) -> MigrateRun:
    """Switch the serving alias back to the old collection and close the migration."""
    return _step("rollback", sink, drop=drop, **options)


def finish(sink: str | Sink, *, drop_old: bool = False, **options: Any) -> MigrateRun:
    """Close a cut-over migration; ``drop_old=True`` deletes the old collection (only then)."""
    return _step("finish", sink, drop=drop_old, **options)


def _step(action: Action, sink: str | Sink, **options: Any) -> MigrateRun:
    from_model = options.pop("from_model", "")
    to_model = options.pop("to_model", "")
    return migrate(from_model, to_model, sink, strategy="dual-write", action=action, **options)


def _check_args(
    strategy: str,
    action: str,
    from_model: str,
    to_model: str,
    sample_size: int | None,
    threshold: float | None,
    k: int,
) -> None:
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}", hint=f"use one of {', '.join(STRATEGIES)}")
    if action not in ACTIONS:
        raise ConfigError(f"unknown action {action!r}", hint=f"use one of {', '.join(ACTIONS)}")
    if strategy != "dual-write" and action != "start":
        raise ConfigError(
            f"action={action!r} applies to strategy='dual-write' only", hint="drop action= for " + strategy
        )
    starting = strategy != "dual-write" or action == "start"
    if starting and (not from_model or not to_model):
        raise ConfigError("from_model and to_model are required", hint="pass both model names")
    if from_model and from_model == to_model:
        raise ConfigError(f"from_model and to_model are both {from_model!r}", hint="nothing to migrate")
    if sample_size is not None and (not isinstance(sample_size, int) or sample_size < 1):
        raise ConfigError(f"sample_size must be a positive integer, got {sample_size!r}", hint="e.g. 5000")
    if threshold is not None and not (isinstance(threshold, int | float) and 0.0 <= threshold <= 1.0):
        raise ConfigError(f"threshold must be in [0, 1], got {threshold!r}", hint="ARR@k is a fraction")
    if not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}", hint="k=10 is the usual measure")


def _dual_write_step(
    dw: DualWrite,
    action: Action,
    from_model: str,
    to_model: str,
    params: dict[str, Any],
    run_context: dict[str, Any] | None,
    started: float,
) -> MigrateRun:
    run = dw.run
    if action == "start":
        ledger_uri = _resolved_uri(dw.given)
        m_holder: dict[str, Any] = {}

        def body() -> None:
            m_holder.update(dw.start(from_model, to_model))

        _recorded(run, dw.ledger, ledger_uri, params, run_context, started, body, describe=lambda: m_holder)
        return run
    m = dw.find(from_model or None, to_model or None)
    if m is None:
        pair = f" from {from_model} to {to_model}" if from_model and to_model else ""
        raise MigrationError(
            f"the ledger has no dual-write migration{pair} of {dw.given.uri}",
            hint="start one with action='start' (check the sink URI and the ledger path)",
        )
    run.from_model, run.to_model = m["from_model"], m["to_model"]
    steps = {"sync": dw.sync, "cutover": dw.cutover, "rollback": dw.rollback, "finish": dw.finish}
    holder: dict[str, Any] = {}

    def step() -> None:
        holder.update(steps[action](m))

    return _recorded(
        run, dw.ledger, m["sink"], params, run_context, started, step, describe=lambda: holder or m
    )


def _recorded(
    run: MigrateRun,
    ledger: Ledger,
    sink_uri: str,
    params: dict[str, Any],
    run_context: dict[str, Any] | None,
    started: float,
    body: Callable[[], None],
    *,
    describe: Callable[[], dict[str, Any]] | None = None,
) -> MigrateRun:
    """Run ``body`` as a ledger run of kind ``migrate``: opened first, closed with its outcome."""
    start = RunStart(
        kind="migrate", model=run.to_model, sink=sink_uri, run_context=run_context, params=params
    )

    def details(record: MigrateRun) -> dict[str, Any]:
        _describe(record, describe)
        return _ledger_record(record)

    try:
        with recorded_run(ledger, run, start, started=started, details=details):
            body()
    except DriftError as exc:
        exc.fields.setdefault("migrate_run", run.to_dict())
        raise
    return run


def _describe(run: MigrateRun, describe: Callable[[], dict[str, Any]] | None) -> None:
    m = describe() if describe else None
    if not m:
        return
    d = m.get("details", {})
    run.sink = m.get("sink", run.sink)
    run.target_sink = m.get("target_sink")
    run.metrics.update(
        {
            "migration_id": m.get("migration_id"),
            "state": m.get("state"),
            "alias": d.get("alias"),
            "old_collection": d.get("old_collection"),
            "target_collection": d.get("target_collection"),
            "dim_old": d.get("dim_old"),
            "dim_new": d.get("dim_new"),
        }
    )


def _ledger_record(run: MigrateRun) -> dict[str, Any]:
    """The run as the ledger stores it: dual-write cost lives in its embed/watch runs, not twice."""
    record = run.to_dict()
    if run.strategy == "dual-write":
        record["metrics"] = {**record["metrics"], "cost_usd": run.cost_usd, "tokens": run.tokens}
        record.update(cost_usd=0.0, tokens=0, n_embedded=0)
    return record


def _resolved_uri(given: Sink) -> str:
    """The URI of the collection behind the given name (itself, or an alias's target)."""
    behind = given.resolve_alias(given.collection) if "alias" in given.capabilities else None
    if behind is None:
        return given.uri
    handle = given.with_collection(behind)
    try:
        return handle.uri
    finally:
        handle.close()


def _known_sink(given: Sink, ledger: Ledger, from_model: str) -> tuple[Sink, str]:
    """(handle on the real collection, the URI the ledger knows its points by); refuse unknown sinks."""
    behind = given.resolve_alias(given.collection) if "alias" in given.capabilities else None
    old = given.with_collection(behind) if behind else given
    try:
        uri = next((u for u in (old.uri, given.uri) if ledger.live_count(u)), None)
        if uri is None:
            raise MigrationError(
                f"the ledger knows no points in {given.uri}" + (f" (alias of {behind})" if behind else ""),
                hint="migrate a collection drift embedded into: check the sink URI and the ledger path",
            )
        models = ledger.models_in_sink(uri)
        if from_model not in models:
            raise MigrationError(
                f"{uri} holds vectors of {sorted(models)}, not of {from_model}",
                hint=f"pass from_model={next(iter(models))!r}",
            )
    except BaseException:
        if old is not given:
            old.close()
        raise
    return old, uri
