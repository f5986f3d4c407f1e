"""Shared by the fault-path tests: run ``drift`` as a user does and check it failed in one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_drift(argv: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 120) -> CliResult:
    """Run the ``drift`` command in a fresh process (a crash there cannot hide inside pytest)."""
    proc = subprocess.run(
        [sys.executable, "-m", "airflow_provider_drift.cli", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def assert_clean_failure(result: CliResult, *, code: int, says: str) -> None:
    """The command failed with ``code``, one error line naming ``says`` plus its hint, and no traceback."""
    assert result.code == code, (result.code, result.err)
    assert "Traceback" not in result.err and "Traceback" not in result.out, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 2, result.err
    assert lines[0].startswith("drift: error: ") and says in lines[0], result.err
    assert lines[1].startswith("  hint: ") and len(lines[1]) > len("  hint: ") + 5, result.err


def write_parquet(path: Path, n: int = 10) -> Path:
    """A small Parquet table of ``id`` (int) and ``text`` rows."""
    pq.write_table(pa.table({"id": list(range(n)), "text": [f"text number {i}" for i in range(n)]}), path)
    return path
