"""``dev/quickstart`` as a new user runs it, and the ``drift`` commands it prints afterwards."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

RESULT = re.compile(
    r"^   ([\d,]+) rows, ([\d,]+) unchanged, ([\d,]+) embedded, ([\d,]+) written, cost \$0\.000000"
)


def user_env(home: Path) -> dict[str, str]:
    """A shell like the user's: no test-suite ledger or Airflow settings, the quickstart's DRIFT_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFT_", "AIRFLOW_", "AIRFLOW__"))}
    env["DRIFT_HOME"] = str(home)
    return env


def test_quickstart_prints_its_result_and_next_commands_that_work(tmp_path: Path) -> None:
    home = tmp_path / "demo-home"
    done = subprocess.run([REPO / "dev" / "quickstart"], env=user_env(home), capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    ours = [line for line in lines if not line.startswith("  .venv/bin/drift ")]  # commands hold long paths
    assert max(map(len, ours)) < 200 and not any(" INFO " in line for line in lines)  # no Airflow log lines
    results = [m.groups() for m in map(RESULT.match, lines) if m]
    assert len(results) == 1
    rows, unchanged, embedded, written = (int(n.replace(",", "")) for n in results[0])
    assert (rows, unchanged, written) == (2000, 0, 2000) and 0 < embedded <= 2000

    # The printed next steps, run as typed in a fresh shell (minus the shell's DRIFT_HOME: the
    # printed export must provide it).
    steps = lines[lines.index("Next, try the drift CLI on what the quickstart wrote (in a new shell):") + 1 :]
    commands = [s.strip() for s in steps if s.startswith("  ")]
    assert commands[0] == f"cd {REPO}" and commands[1] == f"export DRIFT_HOME={home}"
    assert all(c.startswith(".venv/bin/drift ") for c in commands[2:]) and len(commands) == 7
    env = user_env(home)
    del env["DRIFT_HOME"]
    outputs = []
    for i in range(2, len(commands)):
        script = "\n".join(["set -euo pipefail", *commands[:2], commands[i]])
        ran = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300)  # fmt: skip
        assert ran.returncode == 0, f"{commands[i]}\n{ran.stdout}{ran.stderr}"
        outputs.append(ran.stdout)
    status, runs, cost, provenance, rerun = outputs
    assert "points            2,000 × 1536-d" in status and "ledger agrees     yes" in status
    assert len(runs.splitlines()) == 2 and " embed " in runs and " success " in runs
    assert "openai/text-embedding-3-small" in cost
    assert "source_key      7" in provenance and "deleted         False" in provenance
    assert (
        "n_rows_deduped    2,000" in rerun
        and "n_embedded        0" in rerun
        and "n_written         0" in rerun
    )
