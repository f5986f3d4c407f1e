"""Write a realistic, deterministic Delta table of support tickets for demos and benchmarks.

Rows are built with vectorised Arrow kernels from template pieces, so a
million rows take seconds. Row ``i`` depends only on ``(seed, start_id + i)``'s
block, not on ``n``: a smaller table is a prefix of a larger one with the same
seed. About 3% of bodies are canned texts shared by many tickets, so dedup
has real work to do; the rest are unique (they carry ticket-specific numbers).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Content for row i is drawn from the RNG of its block, so chunking never changes content.
_BLOCK = 50_000
_BASE_TIME_US = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)
_SPAN_US = 90 * 24 * 3600 * 1_000_000
_CANNED_SHARE = 0.03
_ROW_GROUP = 65_536

SAMPLE_SCHEMA = pa.schema(
    [
        pa.field("ticket_id", pa.int64(), nullable=False),
        pa.field("subject", pa.string()),
        pa.field("body", pa.string()),
        pa.field("product", pa.string()),
        pa.field("updated_at", pa.timestamp("us", tz="UTC")),
    ]
)

PRODUCTS = [
    "Acme Cloud",
    "Acme Mobile",
    "Acme Desktop",
    "Acme Billing",
    "Acme Analytics",
    "Acme API",
    "Acme Sync",
    "Acme Mail",
]
ISSUES = [
    (
        "Login fails",
        "I cannot log in; the page says my password is wrong even after a reset",
    ),
    ("Sync stuck", "sync has been stuck at the same percentage since this morning"),
    ("Export broken", "exporting a report to CSV produces an empty file"),
    ("Slow dashboard", "the dashboard takes more than a minute to load"),
    ("Duplicate charge", "I was charged twice for the same invoice this month"),
    ("App crash", "the app crashes right after the splash screen"),
    ("Missing data", "records I created yesterday are missing from the list view"),
    ("API timeout", "requests to the orders endpoint time out intermittently"),
    ("2FA codes", "two-factor codes arrive late or not at all"),
    ("Notifications", "email notifications stopped arriving for my whole team"),
    (
        "Permission error",
        "a colleague gets a permission denied error on a shared folder",
    ),
    (
        "Upgrade question",
        "I want to know what changes when we move to the business plan",
    ),
]
OPENERS = [
    "Hi team,",
    "Hello,",
    "Good morning,",
    "Hi support,",
    "Dear Acme support,",
    "Hey there,",
]
DETAILS = [
    "It started after the update to version 4.{a}.{b}.",
    "This affects about {a}{b} of our users.",
    "We first noticed it {a} days ago and it happens every time.",
    "Our order number is #{a}{b}{c}, in case that helps.",
    "I already cleared the cache and tried {a} different browsers.",
    "The error code shown is E{a}{b}{c}.",
    "It only happens on our account in region eu-{a}.",
    "Restarting did not help; it came back after {a}{b} minutes.",
]
CLOSERS = [
    "Thanks in advance.",
    "Please advise.",
    "Can you take a look?",
    "This is blocking our release, please help.",
    "Any workaround would be appreciated.",
    "Thank you!",
]
FIRST_NAMES = [
    "Alice",
    "Bruno",
    "Chen",
    "Dana",
    "Emeka",
    "Fatima",
    "Gustav",
    "Hana",
    "Ivan",
    "Julia",
    "Kofi",
    "Lena",
    "Mateo",
    "Nadia",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Tariq",
]
LAST_NAMES = [
    "Adams",
    "Berg",
    "Costa",
    "Dubois",
    "Evans",
    "Fischer",
    "Garcia",
    "Hoang",
    "Ito",
    "Jensen",
    "Kowalski",
    "Lopez",
    "Moreau",
    "Nakamura",
    "Okafor",
    "Petrov",
    "Quispe",
    "Rossi",
    "Singh",
    "Tanaka",
]
CANNED = [
    "Please close this ticket, the issue is resolved.",
    "Thanks, that fixed it!",
    "I have the same problem as my colleague, see the other ticket.",
    "How do I reset my password?",
    "Where can I download my invoices?",
    "Is there an outage right now?",
    "Please call me back about my account.",
    "How do I add a new user to my team?",
]


def sample_ticket_batches(n: int, *, seed: int = 0, start_id: int = 1) -> Iterator[pa.RecordBatch]:
    """Yield ``n`` ticket rows with ids ``start_id .. start_id + n - 1`` in blocks of 50k rows."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    end = start_id + n
    block_start = start_id - (start_id - 1) % _BLOCK
    while block_start < end:
        block = _block(block_start, seed)
        lo = max(start_id, block_start) - block_start
        hi = min(end, block_start + _BLOCK) - block_start
        yield block.slice(lo, hi - lo)
        block_start += _BLOCK


def write_sample_tickets(
    path: str | os.PathLike[str],
    n: int = 10_000,
    seed: int = 0,
    *,
    mode: Literal["overwrite", "append", "error"] = "overwrite",
    start_id: int = 1,
    storage_options: Mapping[str, str] | None = None,
) -> str:
    """Write ``n`` sample tickets as one Delta commit with the change data feed enabled; return the path.

    ``mode="append"`` with a higher ``start_id`` adds new tickets to an existing table.
    """
    from deltalake import WriterProperties, write_deltalake

    if isinstance(path, Path) or "://" not in str(path):
        path = os.path.abspath(os.fspath(path))
    reader = pa.RecordBatchReader.from_batches(
        SAMPLE_SCHEMA, sample_ticket_batches(n, seed=seed, start_id=start_id)
    )
    write_deltalake(
        str(path),
        reader,
        mode=mode,
        configuration={"delta.enableChangeDataFeed": "true"},
        # Row groups of 64k rows keep any Parquet reader's memory small (delta-rs defaults to 1M).
        writer_properties=WriterProperties(max_row_group_size=_ROW_GROUP),
        storage_options=dict(storage_options) if storage_options else None,
    )
    return str(path)


def ensure_sample_tickets(path: str | os.PathLike[str], n: int = 10_000, seed: int = 0) -> tuple[str, bool]:
    """Write the sample table at a local ``path`` unless one is there; return ``(path, created)``.

    Safe when many processes call it at once (concurrent DAG runs, a backfill):
    they take an exclusive lock on ``<path>.lock`` in turn, the first writes the
    table into a temporary folder beside ``path`` and renames it into place in
    one step, the others find it and leave it alone. A crash leaves either no
    table or a whole one, never a half-written one a later call would keep.
    """
    import fcntl

    target = Path(os.path.abspath(os.fspath(path)))
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{target}.lock", "a+b") as lock:  # never deleted: deleting a lock file races
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        if (target / "_delta_log").is_dir():
            return str(target), False
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            write_sample_tickets(staging, n=n, seed=seed, mode="error")
            if target.exists():  # a folder without a Delta log: nothing a reader could have used
                shutil.rmtree(target)
            os.rename(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return str(target), True


def _block(block_start: int, seed: int) -> pa.RecordBatch:
    """Build the rows of one block; the RNG stream depends only on (seed, block_start)."""
    rng = np.random.default_rng([seed, block_start])
    m = _BLOCK
    ids = np.arange(block_start, block_start + m, dtype=np.int64)
    product = rng.integers(0, len(PRODUCTS), m)
    issue = rng.integers(0, len(ISSUES), m)
    opener = rng.integers(0, len(OPENERS), m)
    detail = rng.integers(0, len(DETAILS), m)
    closer = rng.integers(0, len(CLOSERS), m)
    first = rng.integers(0, len(FIRST_NAMES), m)
    last = rng.integers(0, len(LAST_NAMES), m)
    canned = rng.random(m) < _CANNED_SHARE
    canned_idx = rng.integers(0, len(CANNED), m)
    digits = rng.integers(0, 10, (3, m))
    updated = _BASE_TIME_US + rng.integers(0, _SPAN_US, m)

    products = pa.array(PRODUCTS).take(pa.array(product))
    titles = pa.array([t for t, _ in ISSUES]).take(pa.array(issue))
    problems = pa.array([p for _, p in ISSUES]).take(pa.array(issue))
    subject = pc.binary_join_element_wise(titles, " in ", products, "")
    detail_text = _fill_details(detail, digits)
    body = pc.binary_join_element_wise(
        pa.array(OPENERS).take(pa.array(opener)),
        " In ",
        products,
        ", ",
        problems,
        ". ",
        detail_text,
        " ",
        pa.array(CLOSERS).take(pa.array(closer)),
        " ",
        pa.array(FIRST_NAMES).take(pa.array(first)),
        " ",
        pa.array(LAST_NAMES).take(pa.array(last)),
        "",
    )
    body = pc.if_else(pa.array(canned), pa.array(CANNED).take(pa.array(canned_idx)), body)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(ids),
            subject,
            body,
            products,
            pa.array(updated, type=pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        ],
        schema=SAMPLE_SCHEMA,
    )


def _fill_details(detail: np.ndarray, digits: np.ndarray) -> pa.Array:
    """Render DETAILS[detail] with per-row digits substituted for its placeholders, in order."""
    split = [re.split(r"\{[abc]\}", template) for template in DETAILS]
    idx = pa.array(detail)
    columns: list[pa.Array] = []
    for slot in range(4):
        columns.append(pa.array([parts[slot] if slot < len(parts) else "" for parts in split]).take(idx))
        if slot < 3:
            # A template with fewer placeholders gets this digit blanked out.
            has_slot = pa.array([len(parts) > slot + 1 for parts in split]).take(idx)
            columns.append(pc.if_else(has_slot, pa.array(digits[slot]).cast(pa.string()), ""))
    return pc.binary_join_element_wise(*columns, "")
