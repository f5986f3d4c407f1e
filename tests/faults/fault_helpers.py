"""Shared by the fault-path tests: run ``drift`` as a user does and check it failed in one clear line."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest


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


@contextlib.contextmanager
def small_tmpfs(where: Path, *, size: str = "20m") -> Iterator[Path]:
    """Mount a tmpfs of ``size`` at ``where`` for the block: a disk that really fills up.

    Needs root (CI runs as root). Where mounting is not permitted the test is
    skipped, except under CI=true, where it fails: the fault must be exercised there.
    """
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        reason = f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def remount_read_only(where: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True, capture_output=True)


def fill_disk(where: Path, *, leave: int = 0) -> Path:
    """Write a filler file until the filesystem under ``where`` has at most ``leave`` bytes free."""
    filler = where / "filler.bin"
    chunk = b"\0" * (1 << 16)
    with open(filler, "wb") as out:
        while shutil.disk_usage(where).free > leave + len(chunk):
            try:
                out.write(chunk)
                out.flush()
            except OSError:
                break
    with contextlib.suppress(OSError), open(filler, "ab") as out:
        while shutil.disk_usage(where).free > leave:
            out.write(b"\0" * 512)
            out.flush()
    return filler
