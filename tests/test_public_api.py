"""The engine's public names are its functions, however and in whatever order they are imported."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
import types

import pytest

import airflow_provider_drift.engine as engine

FUNCTIONS = ("embed", "watch", "erase", "migrate", "status")
PKG = "airflow_provider_drift.engine"

# Three ways users reach the names; each scenario runs them in one order, in a fresh interpreter.
STEPS = {
    "from_import": f"from {PKG} import embed, status, watch, erase, migrate, Ledger\n"
    "got['from_import'] = [embed, status, watch, erase, migrate]",
    "submodules": "\n".join(f"import {PKG}.{name}" for name in FUNCTIONS),
    "attribute": f"import {PKG} as e\ngot['attribute'] = [getattr(e, n) for n in {FUNCTIONS!r}]",
}

CHECK = f"""
import inspect, sys
import {PKG} as e
from {PKG}.ledger import Ledger as LedgerClass
for n in {FUNCTIONS!r}:
    f = getattr(e, n)
    assert inspect.isfunction(f) and f.__name__ == n, (n, f)
    assert f is getattr(sys.modules["{PKG}." + n], n), n
from {PKG} import Ledger
assert Ledger is LedgerClass
for where, values in got.items():
    assert all(inspect.isfunction(v) for v in values), (where, values)
print("ok")
"""


def run_script(body: str) -> None:
    script = "got = {}\n" + body + "\n" + CHECK
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


@pytest.mark.parametrize("order", list(itertools.permutations(STEPS)), ids="-".join)
def test_public_names_are_the_functions_in_every_import_order(order: tuple[str, ...]) -> None:
    run_script("\n".join(STEPS[step] for step in order))


@pytest.mark.parametrize(
    "first",
    [
        f"from {PKG}.watch import watch",  # imports the embed submodule on its way
        f"from {PKG}.migrate import migrate",
        f"from {PKG}.embed import embed as _e",
        f"import {PKG} as e\n_a = e.embed\nimport {PKG}.embed\n_b = e.embed\nassert _a is _b",
    ],
)
def test_a_submodule_imported_first_does_not_shadow_the_function(first: str) -> None:
    run_script(
        textwrap.dedent(first)
        + f"\nfrom {PKG} import embed, watch, migrate\ngot['x'] = [embed, watch, migrate]"
    )


def test_the_readme_names_are_the_functions_in_this_process() -> None:
    from airflow_provider_drift.engine import Ledger, embed, erase, migrate, status, watch
    from airflow_provider_drift.engine.ledger import Ledger as LedgerClass

    for fn in (embed, watch, erase, migrate, status):
        assert isinstance(fn, types.FunctionType)
        assert getattr(engine, fn.__name__) is fn
    assert Ledger is LedgerClass
    assert sorted(engine.__all__) == sorted([*FUNCTIONS, "Ledger", "DriftAdapter", "EmbedRun", "WatchRun",
                                             "MigrateRun"])  # fmt: skip


def test_importing_the_engine_stays_cheap() -> None:
    heavy = ("pyarrow", "deltalake", "qdrant_edge", "openai", "torch")
    script = f"import sys, {PKG}; print([m for m in {heavy!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
