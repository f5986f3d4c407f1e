"""End to end against a real Airflow: api-server, scheduler, dag-processor and triggerer on this machine.

What ``dag.test()`` cannot show: the example DAGs under the real scheduler,
LocalExecutor, triggerer and REST API, with concurrent runs. In a temporary
AIRFLOW_HOME on a free local port it

1. triggers ``drift_quickstart`` through the REST API and checks its result;
2. unpauses ``delta_cdc_refresh``: its scheduled run creates the sample table
   and embeds it (the baseline);
3. commits one change in each of three past hours, then runs ``airflow
   backfill create`` over those hours (default concurrency) while a fourth,
   REST-triggered run of the last hour runs beside them;
4. checks every run's state and ``return_value`` XCom with exact counts, and
   that the collection equals the table.

Everything it starts is stopped at the end, also on failure. Run it with
``dev/airflow-e2e``; ``--keep`` leaves the AIRFLOW_HOME for inspection.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
N_ROWS = 2_000  # the example DAGs' default n_rows
CDC = "delta_cdc_refresh"
QUICKSTART = "drift_quickstart"
TERMINAL = {"success", "failed"}


class E2EError(AssertionError):
    """A check failed: the message says which and what was seen."""


def check(condition: bool, what: str, seen: Any = None) -> None:
    if not condition:
        raise E2EError(f"{what}" + ("" if seen is None else f" — seen: {seen!r}"))
    print(f"  ok  {what}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Airflow:
    """The four components in their own process groups, and a REST client with a token."""

    def __init__(self, home: Path, port: int) -> None:
        self.home = home
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.token = ""
        self.env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "example_dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "true",
            # Five processes share one SQLite file: wait for its lock (default 5 s), don't fail on it.
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}?timeout=60",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "DRIFT_DEMO_DIR": str(home / "demo"),
            "DRIFT_LEDGER_PATH": str(home / "ledger.db"),
        }
        for name in [n for n in self.env if n.startswith("AIRFLOW_CONN_")]:
            del self.env[name]

    def airflow(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run(
            [str(BIN / "airflow"), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise E2EError(f"airflow {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done.stdout

    def start(self) -> None:
        self.airflow("db", "migrate")
        commands = {
            "api-server": ["api-server", "--port", str(self.port)],
            "scheduler": ["scheduler"],
            "dag-processor": ["dag-processor"],
            "triggerer": ["triggerer"],
        }
        for name, args in commands.items():
            log = open(self.home / f"{name}.log", "wb")  # noqa: SIM115 — the child owns it
            self.procs[name] = subprocess.Popen(
                [str(BIN / "airflow"), *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # setsid: its own process group, stopped as one
            )
        self.wait(lambda: self._health(), "the api-server answers /api/v2/monitor/health", timeout=120)
        self.token = json.loads(self._request("GET", "/auth/token"))["access_token"]

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        deadline = time.monotonic() + 30
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for proc in self.procs.values():  # children the group leader left behind (task runners)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def _health(self) -> bool:
        try:
            self._request("GET", "/api/v2/monitor/health")
            return True
        except (urllib.error.URLError, ConnectionError, OSError):
            return False

    def _request(self, method: str, path: str, body: Any = None) -> bytes:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=30) as response:
            return bytes(response.read())

    def api(self, method: str, path: str, body: Any = None) -> Any:
        return json.loads(self._request(method, "/api/v2" + path, body) or b"null")

    def wait(self, ready: Any, what: str, *, timeout: float = 180, every: float = 1.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise E2EError(f"{name} exited with {proc.returncode} while waiting until {what}")
            result = ready()
            if result:
                return result
            time.sleep(every)
        raise E2EError(f"timed out after {timeout:.0f} s waiting until {what}")

    # --- DAG runs ------------------------------------------------------------------------------------------

    def dag_parsed(self, dag_id: str) -> bool:
        try:
            self.api("GET", f"/dags/{dag_id}")
            return True
        except urllib.error.HTTPError:
            return False

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self.api("GET", f"/dags/{dag_id}/dagRuns?limit=100")["dag_runs"])

    def finished(self, dag_id: str, run_ids: set[str] | None = None) -> list[dict[str, Any]] | None:
        runs = [r for r in self.runs(dag_id) if run_ids is None or r["dag_run_id"] in run_ids]
        return runs if runs and all(r["state"] in TERMINAL for r in runs) else None

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        tis = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {ti["task_id"]: ti["state"] for ti in tis}

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> Any:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
        value = self.api("GET", path + "?deserialize=true")["value"]
        return json.loads(value) if isinstance(value, str) else value


def set_commit_time(table: str, version: int, at: datetime) -> None:
    """Give commit ``version`` the commit time ``at`` (commitInfo.timestamp and the log file's mtime)."""
    log = Path(table) / "_delta_log" / f"{version:020d}.json"
    millis = int(at.timestamp() * 1000)
    log.write_text(re.sub(r'"timestamp":\d+', f'"timestamp":{millis}', log.read_text(), count=1))
    os.utime(log, (at.timestamp(), at.timestamp()))


def quickstart(af: Airflow) -> None:
    print("drift_quickstart through the REST API", flush=True)
    af.api("PATCH", f"/dags/{QUICKSTART}", {"is_paused": False})
    run_id = af.api("POST", f"/dags/{QUICKSTART}/dagRuns", {"logical_date": None})["dag_run_id"]
    (run,) = af.wait(lambda: af.finished(QUICKSTART, {run_id}), "drift_quickstart finishes", timeout=240)
    check(run["state"] == "success", "drift_quickstart succeeded", run["state"])
    embedded = af.xcom(QUICKSTART, run_id, "embed_tickets")
    counts = {k: embedded[k] for k in ("status", "n_rows_processed", "n_rows_deduped", "n_written")}
    check(
        counts == {"status": "success", "n_rows_processed": N_ROWS, "n_rows_deduped": 0, "n_written": N_ROWS},
        f"embed_tickets embedded the {N_ROWS} sample rows",
        counts,
    )
    check(0 < embedded["n_embedded"] <= N_ROWS, "only distinct texts were sent", embedded["n_embedded"])
    state = af.xcom(QUICKSTART, run_id, "show_status")
    seen = (state["points"], state["ledger_points"], state["in_agreement"], state["dim"])
    check(seen == (N_ROWS, N_ROWS, True, 1536), "sink and ledger agree on 2000 points of 1536-d", seen)


def cdc(af: Airflow) -> None:
    from deltalake import DeltaTable

    from airflow_provider_drift.engine.sources.sample import write_sample_tickets

    table = str(af.home / "demo" / "support_tickets_cdc")
    print("delta_cdc_refresh: the scheduled run embeds the table", flush=True)
    af.api("PATCH", f"/dags/{CDC}", {"is_paused": False})  # catchup=False: one run, for the last hour
    first = af.wait(lambda: af.finished(CDC), "the scheduled run finishes", timeout=240)
    # (A new hour starting meanwhile schedules one more run: it finds nothing past the watermark.)
    scheduled = min(first, key=lambda r: r["data_interval_start"])
    check(scheduled["run_type"] == "scheduled", "the first run is the scheduled one", scheduled["run_type"])
    check(scheduled["state"] == "success", "the scheduled run succeeded", scheduled["state"])
    baseline = af.xcom(CDC, scheduled["dag_run_id"], "refresh_vectors")
    seen = (baseline["mode"], baseline["to_version"], baseline["n_inserted"])
    check(seen == ("baseline", 0, N_ROWS), "it embedded the new table's snapshot (version 0)", seen)

    hour = datetime.fromisoformat(scheduled["data_interval_end"]).astimezone(UTC)  # the current hour
    hours = [hour - timedelta(hours=k) for k in (4, 3, 2)]  # three closed hours, none the scheduled one
    DeltaTable(table).update(predicate="ticket_id <= 5", updates={"body": "concat(body, ' (follow-up)')"})
    DeltaTable(table).delete(f"ticket_id > {N_ROWS - 3}")
    write_sample_tickets(table, n=4, seed=1, mode="append", start_id=10_000)
    for version, start in enumerate(hours, start=1):
        set_commit_time(table, version, start + timedelta(minutes=10))
    print(f"committed v1..v3 in the hours starting {', '.join(h.strftime('%H:%M') for h in hours)}")

    print("airflow backfill create over those three hours, a manual run beside it", flush=True)
    backfill_args = (
        "backfill", "create", "--dag-id", CDC,
        "--from-date", hours[0].isoformat(), "--to-date", hours[-1].isoformat(),
    )  # fmt: skip
    for attempt in range(3):
        try:
            af.airflow(*backfill_args)
            break
        except E2EError as exc:
            # Airflow's SQLite metadata DB refuses a writer that raced the scheduler at once
            # ("database is locked", no busy wait): the CLI's transaction rolled back, so retry it.
            created = af.api("GET", f"/backfills?dag_id={CDC}").get("backfills")
            if "database is locked" not in str(exc) or created or attempt == 2:
                raise
            print("  the metadata DB was locked by the scheduler; trying airflow backfill create again")
    # Interval mode needs a data interval: a manual run gets one from its logical date (the last hour).
    manual = {"logical_date": hour.isoformat()}
    manual_id = af.api("POST", f"/dags/{CDC}/dagRuns", manual)["dag_run_id"]
    runs = af.wait(
        lambda: (lambda rs: rs if rs and len(rs) >= 5 else None)(af.finished(CDC)),
        "the three backfill runs and the manual run finish",
        timeout=300,
    )
    backfill = sorted(
        (r for r in runs if r["run_type"] == "backfill"), key=lambda r: r["data_interval_start"]
    )
    check(len(backfill) == 3, "the backfill made one run per hour", [r["dag_run_id"] for r in runs])
    check(
        [datetime.fromisoformat(r["data_interval_start"]) for r in backfill] == hours,
        "their data intervals are the three hours",
        [r["data_interval_start"] for r in backfill],
    )
    check(all(r["state"] == "success" for r in runs), "every run succeeded", [r["state"] for r in runs])
    expected = [  # (inserted, updated, deleted) of each hour's one commit
        (0, 5, 0),
        (0, 0, 3),
        (4, 0, 0),
    ]
    for run, (version, counts) in zip(backfill, enumerate(expected, start=1), strict=True):
        result = af.xcom(CDC, run["dag_run_id"], "refresh_vectors")
        seen = (result["mode"], result["n_inserted"], result["n_updated"], result["n_deleted"])
        check(
            seen == ("interval", *counts), f"the run of {run['data_interval_start']} applied v{version}", seen
        )
        check(result["n_embedded"] <= counts[0] + counts[1], "and embedded only changed texts", result)
    states = af.task_states(CDC, manual_id)
    check(
        (states["wait_for_changes"], states["refresh_vectors"]) == ("skipped", "skipped"),
        "the manual run's hour had no commits: skipped at once, nothing waited in the triggerer",
        states,
    )
    rows = DeltaTable(table).to_pyarrow_table(columns=["ticket_id"])["ticket_id"]
    check(
        (len(rows), len(set(rows.to_pylist()))) == (N_ROWS + 1, N_ROWS + 1),
        "the table was created once: 2001 rows, 2001 keys",
    )


def collection_equals_table(af: Airflow) -> None:
    from airflow_provider_drift.engine.ledger import Ledger
    from airflow_provider_drift.engine.status import status

    sink = f"qdrant+local://{af.home / 'demo' / 'qdrant' / 'support_tickets_cdc'}"
    with Ledger(af.home / "ledger.db") as ledger:
        state = status(sink, ledger=ledger).to_dict()
    seen = (state["points"], state["ledger_points"], state["in_agreement"])
    check(seen == (N_ROWS + 1, N_ROWS + 1, True), "the collection holds one point per row", seen)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary AIRFLOW_HOME")
    args = parser.parse_args()
    started = time.monotonic()
    # SIGTERM (a CI timeout) unwinds like Ctrl-C, so the finally below stops what was started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    home = Path(tempfile.mkdtemp(prefix="drift-airflow-e2e-"))
    af = Airflow(home, free_port())
    print(f"AIRFLOW_HOME={home}, api-server on {af.base}", flush=True)
    ok = False
    try:
        af.start()
        af.wait(lambda: af.dag_parsed(QUICKSTART) and af.dag_parsed(CDC), "the example DAGs are parsed")
        quickstart(af)
        cdc(af)
        ok = True
    except E2EError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        for log in sorted(home.glob("*.log")):
            print(f"--- {log.name} (last 30 lines)", file=sys.stderr)
            print("\n".join(log.read_text(errors="replace").splitlines()[-30:]), file=sys.stderr)
    finally:
        af.stop()
    if ok:
        try:
            collection_equals_table(af)  # after the stop: the embedded sink is one process's at a time
        except E2EError as exc:
            print(f"FAILED: {exc}", file=sys.stderr)
            ok = False
    if args.keep or not ok:
        print(f"kept {home}")
    else:
        shutil.rmtree(home, ignore_errors=True)
    print(f"airflow e2e {'passed' if ok else 'FAILED'} in {time.monotonic() - started:.0f} s", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
