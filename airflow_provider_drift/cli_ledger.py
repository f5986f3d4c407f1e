"""``drift ledger ...``: commands about the ledger itself (copying it to another backend)."""

from __future__ import annotations

import argparse
from typing import Any


def add_ledger_commands(sub: Any) -> None:
    """Add ``drift ledger migrate --from LEDGER --to LEDGER``."""
    p = sub.add_parser("ledger", help="the ledger itself: copy it to PostgreSQL (or back)")
    inner = p.add_subparsers(dest="ledger_command", required=True)
    m = inner.add_parser(
        "migrate",
        help="copy a whole ledger into a new, empty one, verified by row counts and checksums",
        description="Copy every run, provenance row, watermark, migration, adapter and erasure of one "
        "ledger into a new, empty one (e.g. sqlite:///~/.drift/ledger.db to postgresql://...), in one "
        "transaction, verified by row counts and checksums before it commits. Stop the runs that write "
        "the old ledger first, and point them at the new one after.",
    )
    m.add_argument(
        "--from", dest="source", required=True, help="the ledger to copy: a path or sqlite:///PATH"
    )
    m.add_argument(
        "--to",
        dest="target",
        required=True,
        help="the new ledger: postgresql://USER:PASS@HOST:5432/DB?schema=S",
    )
    m.add_argument("--json", action="store_true", help="print the full result as JSON")
    m.set_defaults(handler=cmd_ledger_migrate, render=render_ledger_copy)


def cmd_ledger_migrate(a: argparse.Namespace) -> Any:
    from .engine.ledger.copy import copy_ledger

    return copy_ledger(a.source, a.target)


def render_ledger_copy(result: Any) -> str:
    d = result.to_dict()
    lines = [f"copied {d['source']} -> {d['target']}: {d['rows']:,} rows, verified"]
    lines += [
        f"  {t:<12}{v['rows']:>10,} rows  checksum {v['checksum'][:16]}" for t, v in d["tables"].items()
    ]
    return "\n".join(lines)
