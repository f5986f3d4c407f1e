"""The ``drift`` command: the engine without Airflow.

Every subcommand prints a short human summary, or the full record with
``--json``. Engine errors become one readable line plus a hint, and an exit
code: 2 for terminal errors (fix the input), 3 for transient ones (retry).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from . import __version__
from .engine.errors import DriftError, LedgerError, render_hint


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ledger",
        help="ledger file or postgresql://USER:PASS@HOST/DB?schema=S URL "
        "(default: $DRIFT_LEDGER_URL, $DRIFT_LEDGER_PATH or ~/.drift/ledger.db)",
    )
    p.add_argument("--json", action="store_true", help="print the full result as JSON")


def _source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--table", required=True, help="Delta table path/URI or Parquet file/directory")
    p.add_argument("--text-col", required=True, help="column with the text to embed")
    p.add_argument("--key-col", required=True, help="column that identifies a row (primary key)")
    p.add_argument("--model", default="openai/text-embedding-3-small", help="provider/model")
    p.add_argument("--sink", required=True, help="sink URI, e.g. qdrant+local://~/.drift/qdrant/docs")
    p.add_argument("--shadow-mode", action="store_true", help="deterministic offline vectors, no API key, $0")
    p.add_argument("--dim", type=int, help="vector size for models the engine does not know")
    p.add_argument("--on-invalid", choices=["error", "skip"], default="error")
    p.add_argument("--store-text", action="store_true", help="keep the text in the point payload")
    p.add_argument("--batch-size", type=int, default=4096)


def _source_kwargs(a: argparse.Namespace) -> dict[str, Any]:
    """What embed and watch take alike from the options of :func:`_source_args`."""
    names = ("text_col", "key_col", "model", "sink", "shadow_mode", "dim", "on_invalid", "store_text")
    return {n: getattr(a, n) for n in names} | {"ledger": a.ledger, "batch_size": a.batch_size}


def _progress(run: Any) -> None:
    print(
        f"\r  {run.n_rows_processed:,} rows read, {run.n_rows_deduped:,} unchanged, "
        f"{run.n_embedded:,} embedded, {run.n_written:,} written ({run.duration_s:.1f}s)",
        end="",
        file=sys.stderr,
        flush=True,
    )


def cmd_embed(a: argparse.Namespace) -> Any:
    from .engine.embed import embed

    show = _progress if (a.progress or sys.stderr.isatty()) and not a.json else None
    run = embed(
        a.table,
        filter=a.filter,
        dry_run=a.dry_run,
        delete_missing=a.delete_missing,
        repair=a.repair,
        on_duplicate=a.on_duplicate,
        progress=show,
        **_source_kwargs(a),
    )
    if show:
        print(file=sys.stderr)
    return run


def _existing_ledger(a: argparse.Namespace) -> Any:
    """The ledger a reading command reports on: it must exist; reading never creates one."""
    from .engine.ledger import Ledger

    return Ledger(a.ledger, create=False)


def _since(text: str) -> str:
    """An ISO date or date-time (naive means UTC), as the ledger's UTC timestamps sort."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO date: {text!r} (write e.g. 2026-11-01 or 2026-11-01T08:00)"
        ) from None
    if len(text) == 10:
        return when.date().isoformat()
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def _source_of(a: argparse.Namespace) -> str:
    """The recorded source name: as given, or derived from ``--table`` the way ``embed`` names it."""
    if a.source:
        return str(a.source)
    from .engine.sources import source_name

    return source_name(a.table)


def cmd_status(a: argparse.Namespace) -> Any:
    from .engine.status import status

    with _existing_ledger(a) as led:
        return status(a.sink, ledger=led, verify=a.verify)


def cmd_cost(a: argparse.Namespace) -> Any:
    with _existing_ledger(a) as led:
        return led.cost_by(a.by, since=a.since)


def cmd_provenance(a: argparse.Namespace) -> Any:
    if a.point_id is None and (a.key is None or not (a.source or a.table)):
        raise LedgerError(
            "name a vector: a point id, or a source row (--source or --table, and --key)",
            hint="e.g. drift provenance --table data/support_tickets --key 4711",
        )
    if a.point_id is not None and (a.key is not None or a.source or a.table):
        raise LedgerError(
            "give either a point id or --source/--table with --key, not both", hint="drop one of them"
        )
    if a.point_id is None:
        from .engine.identity import point_id

        source = _source_of(a)
        pid = point_id(source, a.key)
        missing = f"the ledger has no vector of key {a.key!r} in source {source!r}"
    else:
        pid = a.point_id
        missing = f"the ledger has no vector with id {pid}"
    with _existing_ledger(a) as led:
        found = led.provenance(pid)
    if found is None:
        raise LedgerError(
            missing,
            hint="check the id or key and the source as recorded (drift runs --wide shows sources), "
            "or the ledger path (--ledger)",
        )
    return found


def cmd_runs(a: argparse.Namespace) -> Any:
    with _existing_ledger(a) as led:
        return led.recent_runs(a.sink, a.limit)


def cmd_watch(a: argparse.Namespace) -> Any:
    from .engine.watch import watch

    return watch(
        a.table,
        since_version=a.since_version,
        until_version=a.until_version,
        full_refresh=a.full_refresh,
        **_source_kwargs(a),
    )


def cmd_erase(a: argparse.Namespace) -> Any:
    from .engine.erase import erase

    source = _source_of(a)
    with _existing_ledger(a) as led:
        done = erase(source, a.key, ledger=led, sinks=a.sink or ())
    if done.status == "not_found":
        raise LedgerError(
            f"the ledger has no vector of key {a.key!r} in source {source!r}: nothing to erase",
            hint="pass --table with the path you embedded, or --source as recorded (drift runs --wide "
            "shows it, e.g. delta:///abs/path), and check the ledger path (--ledger)",
        )
    return done


def cmd_migrate(a: argparse.Namespace) -> Any:
    from .engine.migrate import migrate

    return migrate(
        a.from_model,
        a.to_model,
        a.sink,
        strategy=a.strategy,
        action=a.action,
        source=a.source,
        text_col=a.text_col,
        key_col=a.key_col,
        sample_size=a.sample_size,
        threshold=a.threshold,
        shadow_mode=a.shadow_mode,
        ledger=a.ledger,
        target_collection=a.target_collection,
        alias=a.alias,
        drop=a.drop,
        dim=a.dim,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="drift", description="Embedding lifecycle for vector search.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("embed", help="embed a table into a sink (dedup, batching, cost)")
    _source_args(p)
    p.add_argument("--filter", help="SQL predicate selecting the rows to embed")
    p.add_argument("--dry-run", action="store_true", help="plan only: rows, tokens and cost, nothing sent")
    p.add_argument("--delete-missing", action="store_true", help="delete points whose rows left the table")
    p.add_argument("--progress", action="store_true", help="show progress even when not on a terminal")
    p.add_argument(
        "--repair", action="store_true", help="first reconcile the ledger with the sink point by point"
    )
    p.add_argument("--on-duplicate", choices=["error", "keep_last"], default="error", help="a repeated key")
    _common(p)
    p.set_defaults(handler=cmd_embed, render=_render_run)

    p = sub.add_parser("status", help="a sink's points, models, runs, cost and ledger agreement")
    p.add_argument("--sink", required=True)
    p.add_argument("--verify", action="store_true", help="compare every point's payload hash with the ledger")
    _common(p)
    p.set_defaults(handler=cmd_status, render=_render_status)

    p = sub.add_parser("cost", help="spend by model, sink, source, kind or day")
    p.add_argument("--by", choices=["model", "sink", "source", "kind", "day"], default="model")
    p.add_argument("--since", type=_since, help="only runs started on or after this ISO date (UTC)")
    _common(p)
    p.set_defaults(handler=cmd_cost, render=_render_table)

    p = sub.add_parser(
        "provenance", help="lineage of one vector: by point id, or by source row (--table/--source and --key)"
    )
    p.add_argument("point_id", nargs="?", help="the vector's point id")
    p.add_argument("--table", help="the table as given to embed/watch: its rows' vectors")
    p.add_argument("--source", help="the source name as recorded, e.g. delta:///data/tickets")
    p.add_argument("--key", help="the row's key")
    _common(p)
    p.set_defaults(handler=cmd_provenance, render=_render_provenance)

    p = sub.add_parser("runs", help="recent runs (of one sink)")
    p.add_argument("--sink")
    p.add_argument("--limit", type=int, default=10)
    p.add_argument("--wide", action="store_true", help="every field (the default fits 100 columns)")
    _common(p)
    p.set_defaults(handler=cmd_runs, render=_render_runs)

    p = sub.add_parser("watch", help="apply a Delta table's change data feed to a sink (incremental refresh)")
    _source_args(p)
    p.add_argument(
        "--since-version", type=int, help="apply versions after N (exclusive) when past the watermark"
    )
    p.add_argument(
        "--until-version", type=int, help="apply versions up to N (inclusive); default: the latest"
    )
    p.add_argument(
        "--full-refresh", action="store_true", help="embed the current snapshot and move the watermark to it"
    )
    _common(p)
    p.set_defaults(handler=cmd_watch, render=_render_watch)

    p = sub.add_parser("erase", help="delete one source row's vector from every sink, with proof")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--table", help="the table as given to embed/watch (its source name is derived the same way)"
    )
    which.add_argument("--source", help="source name as recorded, e.g. delta:///data/tickets")
    p.add_argument("--key", required=True, help="the row's key")
    p.add_argument(
        "--sink",
        action="append",
        help="a sink URI with credentials, for recorded sinks that need them (repeatable; the ledger "
        "records sinks without secrets, e.g. postgresql://user:pw@host/db?table=docs)",
    )
    _common(p)
    p.set_defaults(handler=cmd_erase, render=_render_erase)

    p = sub.add_parser("migrate", help="move a sink to a new model: dual-write, drift-adapter or shadow-eval")
    p.add_argument("--from", dest="from_model", default="", help="the model the sink was embedded with")
    p.add_argument("--to", dest="to_model", default="", help="the new model")
    p.add_argument("--sink", required=True, help="the collection (its real name, or its serving alias)")
    p.add_argument("--strategy", required=True, choices=["dual-write", "drift-adapter", "shadow-eval"])
    p.add_argument(
        "--action",
        choices=["start", "sync", "cutover", "rollback", "finish"],
        default="start",
        help="dual-write step (default: start)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        help="gate on test-split ARR@10 at the collection's size (default: 0.5)",
    )
    p.add_argument("--sample-size", type=int, help="paired texts (adapter: 5000) / texts (eval: 1000)")
    p.add_argument("--shadow-mode", action="store_true", help="deterministic offline vectors, no API key, $0")
    p.add_argument("--source", help="Delta/Parquet path of the texts, if the recorded source is not one")
    p.add_argument("--text-col", help="text column (default: as recorded by the run that wrote the points)")
    p.add_argument("--key-col", help="key column (default: as recorded)")
    p.add_argument("--target-collection", help="dual-write: the new collection (default <base>__<model>)")
    p.add_argument("--alias", help="dual-write: the serving alias readers query (default <base>_live)")
    p.add_argument(
        "--drop", action="store_true", help="finish: drop the old collection; rollback: drop the new"
    )
    p.add_argument("--dim", type=int, help="the new model's vector size, for models the engine does not know")
    _common(p)
    p.set_defaults(handler=cmd_migrate, render=_render_migrate)

    from .cli_ledger import add_ledger_commands

    add_ledger_commands(sub)
    return parser


def _plain(result: Any) -> Any:
    return result.to_dict() if hasattr(result, "to_dict") else result


def _render_run(r: Any) -> str:
    d = _plain(r)
    cost = "unknown (no price for this model)" if d.get("cost_usd") is None else f"${d['cost_usd']:.6f}"
    head = "PLAN (nothing sent or written)" if d.get("dry_run") else f"run {d['run_id']} {d['status']}"
    lines = [f"{head}: {d['source']} -> {d['sink']} with {d['model']}"]
    lines += [
        f"  {k:<18}{d[k]:,}"
        for k in (
            "n_rows_processed",
            "n_rows_deduped",
            "n_embedded",
            "n_reused",
            "n_written",
            "n_deleted",
            "n_skipped",
            "tokens",
        )
        if k in d
    ]
    lines.append(f"  {'cost':<18}{cost}")
    lines.append(f"  {'duration':<18}{d['duration_s']:.2f}s")
    return "\n".join(lines)


def _render_status(s: Any) -> str:
    d = _plain(s)
    agree = "yes" if d["in_agreement"] else f"NO (sink {d['points']:,} vs ledger {d['ledger_points']:,})"
    lines = [
        f"sink {d['sink']}" + ("" if d["exists"] else "  (collection does not exist yet)"),
        f"  points            {d['points']:,}" + (f" × {d['dim']}-d" if d["dim"] else ""),
        f"  ledger agrees     {agree}",
        "  models            " + (", ".join(f"{m} ({n:,})" for m, n in d["models"].items()) or "-"),
        f"  runs              {d['runs']}, cost to date ${d['cost_usd']:.6f}"
        + (f" (+{d['unpriced_runs']} unpriced)" if d["unpriced_runs"] else ""),
    ]
    v = d.get("verify")
    if v is not None:
        lines.append(
            f"  verified          {v['agreeing']:,} agree, {v['mismatched']:,} other text or model,"
            f" {v['missing_in_sink']:,} missing in sink, {v['unknown_to_ledger']:,} unknown to ledger"
            + (f", {v['pending']:,} unsettled" if v["pending"] else "")
        )
        for kind, items in v["examples"].items():
            for e in items:
                lines.append(f"    {kind}: {e}")
    for src, ver in d.get("watermarks", {}).items():
        lines.append(f"  watermark         {src} @ v{ver}")
    for r in d.get("last_runs", []):
        lines.append(
            f"  {r['started_at'][:19]}  {r['kind']:<8}{r['status']:<9}{r['n_rows']:>9,} rows"
            f"{r['n_embedded']:>9,} embedded  {r['run_id'][:12]}"
        )
    return "\n".join(lines)


def _render_table(rows: Any) -> str:
    rows = [_plain(r) for r in rows]
    if not rows:
        return "(nothing recorded yet)"
    cols = [c for c in rows[0] if c != "details"]
    widths = {c: max(len(c), *(len(str(r.get(c))) for r in rows)) for c in cols}
    out = ["  ".join(c.ljust(widths[c]) for c in cols).rstrip()]
    out += ["  ".join(str(r.get(c)).ljust(widths[c]) for c in cols).rstrip() for r in rows]
    return "\n".join(out)


def _render_runs(rows: Any, *, wide: bool = False) -> str:
    """Recent runs: the fields that fit the terminal (100 columns when not on one); ``wide``: all."""
    rows = [_plain(r) for r in rows]
    if wide or not rows:
        return _render_table(rows)

    def cost(r: dict[str, Any]) -> str:
        if r.get("status") == "running":
            return "-"
        return "unpriced" if not r.get("cost_known") or r.get("cost_usd") is None else f"${r['cost_usd']:.6f}"

    table = [
        [
            str(r["run_id"])[:8],
            str(r["started_at"])[:16].replace("T", " "),
            str(r["kind"]),
            str(r["status"]),
            f"{r.get('n_rows') or 0:,}",
            f"{r.get('n_embedded') or 0:,}",
            cost(r),
            str(r.get("model") or "-"),
        ]
        for r in rows
    ]
    head = ["RUN", "STARTED (UTC)", "KIND", "STATUS", "ROWS", "EMBEDDED", "COST", "MODEL"]
    right = {4, 5, 6}
    widths = [max(len(head[i]), *(len(t[i]) for t in table)) for i in range(len(head))]
    width = max(60, shutil.get_terminal_size((100, 24)).columns)
    widths[-1] = min(widths[-1], max(8, width - sum(widths[:-1]) - 2 * (len(head) - 1)))

    def line(cells: list[str]) -> str:
        out = []
        for i, c in enumerate(cells):
            c = c if len(c) <= widths[i] else c[: widths[i] - 1] + "…"
            out.append(c.rjust(widths[i]) if i in right else c.ljust(widths[i]))
        return "  ".join(out).rstrip()

    return "\n".join([line(head), *(line(t) for t in table)])


def _render_provenance(d: Any) -> str:
    d = _plain(d)
    lines = [f"{k:<16}{v}" for k, v in d.items() if k not in ("copies", "erasures")]
    for c in d.get("copies") or []:
        state = f"deleted {c['deleted_at']}" if c.get("deleted_at") else "live"
        lines.append(f"copy            {c['sink']}: point {c['point_id']}, {c['model']}, {state}")
    for e in d.get("erasures") or []:
        proof = "verified" if e.get("verified") else "NOT verified"
        lines.append(f"erasure         {e.get('requested_at')} in {e.get('sink')}: {proof}")
    return "\n".join(lines)


def _render_watch(r: Any) -> str:
    d = _plain(r)
    cost = "unknown (no price for this model)" if d.get("cost_usd") is None else f"${d['cost_usd']:.6f}"
    since = "snapshot" if d["since_version"] is None else f"v{d['since_version']}"
    lines = [
        f"run {d['run_id']} {d['status']} ({d['mode']}): {d['source']} {since} -> v{d['to_version']}",
        f"  into {d['sink']} with {d['model']}",
    ]
    for label, k in (
        ("changed rows", "n_changes"),
        ("inserted", "n_inserted"),
        ("updated", "n_updated"),
        ("deleted", "n_deleted"),
        ("unchanged", "n_unchanged"),
        ("stale (skipped)", "n_stale_skipped"),
        ("embedded", "n_embedded"),
        ("tokens", "tokens"),
    ):
        lines.append(f"  {label:<18}{d[k]:,}")
    lines.append(f"  {'cost':<18}{cost}")
    lines.append(f"  {'duration':<18}{d['duration_s']:.2f}s")
    return "\n".join(lines)


def _render_erase(r: Any) -> str:
    d = _plain(r)
    lines = [f"erasure {d['status']}: key {d['key']!r} of {d['source']} (point {d['point_id']})"]
    if d.get("already_erased"):
        lines.append("  already erased: no sink held it before this request; checked again")
    for s in d["sinks"]:
        proof = "verified: the sink no longer returns it" if s["verified"] else f"NOT verified: {s['error']}"
        lines.append(f"  {s['sink']}: {proof} (erasure {s['erasure_id']})")
    return "\n".join(lines)


def _render_migrate(r: Any) -> str:
    d = _plain(r)
    m = d.get("metrics") or {}
    cost = "unknown (no price for this model)" if d.get("cost_usd") is None else f"${d['cost_usd']:.6f}"
    step = f" {m['action']}" if m.get("action") else ""
    lines = [f"{d['strategy']}{step} {d['status']}: {d['from_model']} -> {d['to_model']} on {d['sink']}"]
    if d["strategy"] == "dual-write":
        lines.append(f"  {'state':<18}{m.get('state')}  (migration {m.get('migration_id')})")
        lines.append(f"  {'serving alias':<18}{m.get('alias')}")
        lines.append(f"  {'old collection':<18}{m.get('old_collection')} ({m.get('dim_old')}-d)")
        lines.append(f"  {'new collection':<18}{m.get('target_collection')} ({m.get('dim_new')}-d)")
    for label, k in (("ARR@10", "arr"), ("overlap@10", "overlap"), ("threshold", "threshold")):
        if d.get(k) is not None:
            lines.append(f"  {label:<18}{d[k]:.3f}")
    if d.get("passed") is not None:
        lines.append(f"  {'gate':<18}{'passed' if d['passed'] else 'FAILED'}")
    if d.get("adapter_path"):
        lines.append(f"  {'adapter':<18}{d['adapter_kind']} {d['adapter_path']}")
    if m.get("recommended_strategy"):
        lines.append(f"  {'recommended':<18}{m['recommended_strategy']}")
    lines.append(f"  {'points':<18}{d['n_points']:,}")
    lines.append(f"  {'embedded':<18}{d['n_embedded']:,} texts, {d['tokens']:,} tokens, {cost}")
    lines.append(f"  {'duration':<18}{d['duration_s']:.2f}s")
    return "\n".join(lines)


def _option_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Engine keyword → this CLI's option for it (``from_model`` → ``--from``), for hints."""
    names: dict[str, str] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                for key, flag in _option_names(subparser).items():
                    names.setdefault(key, flag)
        longs = [o for o in action.option_strings if o.startswith("--")]
        if longs:
            names.setdefault(action.dest, longs[0])
    return names


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.handler(args)
    except DriftError as exc:
        print(f"drift: error: {exc.message}", file=sys.stderr)
        hint = render_hint(exc.hint_template, "cli", names=_option_names(parser))
        if hint:
            print(f"  hint: {hint}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # a full disk the engine did not check for itself: still transient, still one line
        print(
            f"drift: error: no space left on the disk of {exc.filename or 'a file drift writes'}",
            file=sys.stderr,
        )
        print("  hint: free space on that disk and retry", file=sys.stderr)
        return 3
    if args.json:
        text = json.dumps(
            _plain(result) if not isinstance(result, list) else [_plain(r) for r in result],
            indent=2,
            default=str,
        )
    elif args.render is _render_runs:
        text = _render_runs(result, wide=args.wide)
    else:
        text = args.render(result)
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # the reader left (`drift runs --json | head -1`): end quietly, with the status a shell
        # reports for SIGPIPE; point stdout at /dev/null so the exit-time flush cannot fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    return 0


if __name__ == "__main__":
    sys.exit(main())
