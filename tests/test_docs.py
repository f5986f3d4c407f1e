"""Every Python and shell block of README.md and docs/*.md runs as a user would run it.

Blocks run in order, per document, in a fresh interpreter or ``bash``, in a
scratch folder that holds the sample table the docs name
(``data/support_tickets``, 5,000 tickets with the change data feed on), with
``HOME`` and ``DRIFT_HOME`` pointed there and ``drift`` on ``PATH`` (as after
``source .venv/bin/activate``). A block that cannot run here (it needs Docker,
a server, an API key, or is a fragment of a DAG) is marked in the Markdown
with ``<!-- doc-test: skip (the reason) -->`` on the line before it;
``text`` blocks are diagrams and trees.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from airflow_provider_drift.engine.sources.sample import write_sample_tickets
from tests.conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RUNS = {"python": "python", "bash": "bash", "sh": "bash", "shell": "bash"}
NOT_CODE = {"text"}
FENCE = re.compile(r"^```(\S*)\s*$")
SKIP = re.compile(r"^<!--\s*doc-test:\s*skip\s*\((?P<reason>[^)]*\S[^)]*)\)\s*-->\s*$")
#: rows of the sample table the docs name; 4711, the docs' example key, is one of them
SAMPLE_ROWS = 5_000


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None  # the reason given in the marker, if any

    @property
    def id(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"


def read_blocks(doc: Path) -> list[Block]:
    lines = doc.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        assert end is not None, f"{doc.name}:{i + 1}: unclosed code fence"
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = SKIP.match(before.strip())
        code = "\n".join(lines[i + 1 : end]) + "\n"
        found.append(Block(doc, i + 1, opening.group(1), code, marker.group("reason") if marker else None))
        i = end + 1
    return found


BLOCKS = [b for doc in DOCS for b in read_blocks(doc)]
RUNNABLE = [b for b in BLOCKS if b.lang in RUNS and b.skip is None]


def test_the_docs_have_blocks_to_run() -> None:
    assert {b.doc.name for b in RUNNABLE} >= {"README.md", "watch.md", "migration.md"}


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.id)
def test_every_block_is_run_or_marked_with_a_reason(block: Block) -> None:
    if block.skip is not None:
        assert block.lang not in NOT_CODE, f"{block.id}: a text block needs no skip marker"
        assert len(block.skip.split()) >= 2, f"{block.id}: say why the block cannot run here"
        return
    assert block.lang in RUNS or block.lang in NOT_CODE, (
        f"{block.id}: a ```{block.lang or '(no language)'} block: write ```python, ```bash or ```text, "
        "or mark it <!-- doc-test: skip (why) -->"
    )


class DocWorkspace:
    """One scratch folder per document: its blocks run there in order, each after the ones before it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.done: dict[Path, int] = {}

    def folder(self, doc: Path) -> Path:
        folder = self.root / doc.stem
        if not folder.exists():
            (folder / "home").mkdir(parents=True)
            write_sample_tickets(folder / "data" / "support_tickets", n=SAMPLE_ROWS, seed=0)
        return folder

    def env(self, folder: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFT_", "OPENAI_", "AIRFLOW"))}
        env["HOME"] = str(folder / "home")
        env["DRIFT_HOME"] = str(folder / "home" / ".drift")
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        return env

    def run(self, block: Block) -> subprocess.CompletedProcess[str]:
        folder = self.folder(block.doc)
        before = [b for b in RUNNABLE if b.doc == block.doc and b.line < block.line]
        for earlier in before[self.done.get(block.doc, 0) :]:
            done = self._execute(earlier, folder)
            assert done.returncode == 0, f"{earlier.id} (run before {block.id}) failed:\n{done.stderr}"
        done = self._execute(block, folder)
        self.done[block.doc] = len(before) + 1
        return done

    def _execute(self, block: Block, folder: Path) -> subprocess.CompletedProcess[str]:
        if RUNS[block.lang] == "python":
            argv = [sys.executable, "-c", block.code]
        else:
            argv = ["bash", "-euo", "pipefail", "-c", block.code]
        return subprocess.run(
            argv, cwd=folder, env=self.env(folder), capture_output=True, text=True, timeout=600
        )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> DocWorkspace:
    return DocWorkspace(tmp_path_factory.mktemp("docs"))


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: b.id)
def test_block_runs(block: Block, workspace: DocWorkspace) -> None:
    done = workspace.run(block)
    assert done.returncode == 0, f"{block.id} failed (exit {done.returncode}):\n{block.code}\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
