"""The check history store (SQLite) and the `check history` / `check ack` commands.

The runs stored here are built from tests/data/check-report.json, a real
`k3sops -o json check --no-history` output captured from the dev lab with the crashloop,
pending, failed-pod, oomkilled, stuck-rollout and node-notready scenarios applied. The store is
a real SQLite file in a temporary directory (no mock). What every backend must do (last run,
runs and trend, acknowledgements, drills) is in test_history_contract.py, run on SQLite and
PostgreSQL; this file keeps what is SQLite's own and the CLI commands.
"""

from __future__ import annotations

import json
import sqlite3
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from history_kit import at, load_report
from k3sops.adapters.store import DB_NAME, HistoryStore, SqliteStore, default_dir
from k3sops.adapters.store.sqlite import SCHEMA_VERSION
from k3sops.cli.app import main
from k3sops.domain import checks
from k3sops.domain.findings import CheckReport, ManualItem
from k3sops.errors import AdapterError, ExitCode, HistoryError

pytestmark = pytest.mark.unit

@pytest.fixture
def report() -> CheckReport:
    return load_report()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    s = SqliteStore.open(tmp_path / "state")
    yield s
    s.close()


T0 = datetime(2026, 11, 20, 7, 30, tzinfo=UTC)


def test_default_dir_precedence() -> None:
    home = Path("/home/op")
    assert default_dir({}, home) == home / ".local/state/k3sops"
    assert default_dir({"XDG_STATE_HOME": "/x"}, home) == Path("/x/k3sops")
    assert default_dir({"XDG_STATE_HOME": "/x", "K3SOPS_STATE_DIR": "/s"},
                                    home) == Path("/s")


def test_open_creates_private_directory_and_versioned_wal_database(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "state"
    SqliteStore.open(directory).close()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / DB_NAME).stat().st_mode) == 0o600
    conn = sqlite3.connect(directory / DB_NAME)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    # Opening again is a no-op migration and keeps what was stored.
    with SqliteStore.open(directory) as s:
        assert s.runs() == []


def test_record_round_trip(store: HistoryStore, report: CheckReport) -> None:
    run_id = store.record(report)
    got = store.last_run("daily", None)
    assert got is not None
    assert got.id == run_id
    assert got.summary == report.summary
    assert got.findings == report.findings
    assert {f.key for f in got.findings} == {f.key for f in report.findings}
    assert got.started_at == report.summary.started_at


def test_new_and_resolved_can_be_computed_from_the_last_run(store: HistoryStore,
                                                            report: CheckReport) -> None:
    """What services.check does with last_run: keys of the stored findings against today's."""
    store.record(at(report, T0))
    fixed = report.findings[0]
    today = report.findings[1:]
    before = store.last_run("daily", None)
    assert before is not None
    before_keys = {f.key for f in before.findings}
    resolved = [f for f in before.findings if f.key not in {g.key for g in today}]
    assert [f.key for f in resolved] == [fixed.key]
    assert all(f.key in before_keys for f in today)


def test_latest_ack_wins(store: HistoryStore) -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    store.ack("item", "daily", "alice", "first", now - timedelta(hours=3))
    store.ack("item", "daily", "bob", "second", now - timedelta(hours=1))
    assert store.acks(now)["item"]["by"] == "bob"
    assert store.acks(now)["item"]["note"] == "second"


def test_concurrent_writers(tmp_path: Path, report: CheckReport) -> None:
    """Two processes' worth of connections writing at once: every run is stored, none fails."""
    directory = tmp_path / "state"
    errors: list[BaseException] = []

    def writer(offset: int) -> None:
        try:
            with SqliteStore.open(directory) as s:
                for i in range(25):
                    s.record(at(report, T0 + timedelta(minutes=offset + 2 * i)))
                    s.ack(f"item-{offset}", "daily", "w", None, T0)
        except BaseException as e:  # collected and asserted on below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with SqliteStore.open(directory) as s:
        assert len(s.runs(limit=100)) == 50
        assert set(s.acks(T0)) == {"item-0", "item-1"}


def test_a_writer_waits_for_another_writers_transaction(tmp_path: Path,
                                                        report: CheckReport) -> None:
    directory = tmp_path / "state"
    SqliteStore.open(directory).close()
    holder = sqlite3.connect(directory / DB_NAME, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process mid-write
    done = threading.Event()

    def write() -> None:
        with SqliteStore.open(directory) as s:
            s.record(report)
        done.set()

    t = threading.Thread(target=write)
    t.start()
    assert not done.wait(0.5)  # blocked on the lock, not failed
    holder.execute("COMMIT")
    holder.close()
    t.join()
    assert done.is_set()
    with SqliteStore.open(directory) as s:
        assert len(s.runs()) == 1


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path, report: CheckReport) -> None:
    """A write that fails inside the transaction (here a trigger, as a full disk would) is
    rolled back, reported as HistoryError, and leaves the store usable."""
    directory = tmp_path / "state"
    with SqliteStore.open(directory) as s:
        conn = sqlite3.connect(directory / DB_NAME)
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON runs "
                     "BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        conn.commit()
        with pytest.raises(HistoryError, match="disk full"):
            s.record(report)
        assert s.runs() == []
        conn.execute("DROP TRIGGER refuse")
        conn.commit()
        conn.close()
        s.record(report)
        assert len(s.runs()) == 1


def test_corrupt_database_is_an_adapter_error_naming_the_file(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    directory.mkdir()
    (directory / DB_NAME).write_bytes(b"this is not sqlite, it is a text file " * 200)
    with pytest.raises(HistoryError) as e:
        SqliteStore.open(directory)
    assert isinstance(e.value, AdapterError)
    assert e.value.exit_code == ExitCode.RUNTIME
    assert e.value.path == directory / DB_NAME
    assert str(directory / DB_NAME) in e.value.message
    assert "corrupt" in e.value.message
    assert e.value.hint is not None and "mv " in e.value.hint


def test_unwritable_location_is_an_adapter_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the state directory should be")
    with pytest.raises(HistoryError) as e:
        SqliteStore.open(blocker / "state")
    assert str(blocker / "state" / DB_NAME) in e.value.message
    assert e.value.hint is not None and "--state-dir" in e.value.hint


def test_database_from_a_newer_k3sops_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    SqliteStore.open(directory).close()
    conn = sqlite3.connect(directory / DB_NAME)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(HistoryError, match="newer"):
        SqliteStore.open(directory)


# -- CLI -------------------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The `check` group with history/ack attached, a manual step, and a state directory."""
    monkeypatch.setitem(checks.MANUAL, "test-review-board", ManualItem(
        id="test-review-board", period="daily", title="Look at the board",
        instructions="Open the board and read it."))
    state = tmp_path / "state"
    monkeypatch.setenv("K3SOPS_STATE_DIR", str(state))
    return state


def run(args: list[str]) -> int:
    with pytest.raises(SystemExit) as e:
        main(args)
    return int(e.value.code or 0)


def test_cli_ack_unknown_item_lists_known_ids(cli: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["check", "ack", "no-such-step", "--note", "x"]) == 2
    err = capsys.readouterr().err
    assert "no-such-step" in err and "test-review-board" in err


def test_cli_ack_and_history(cli: Path, report: CheckReport,
                             capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["-o", "json", "check", "ack", "test-review-board", "--note", "all quiet",
                "--by", "alice"]) == 0
    ack = json.loads(capsys.readouterr().out)
    assert (ack["item"], ack["by"], ack["note"], ack["period"]) == (
        "test-review-board", "alice", "all quiet", "daily")
    with SqliteStore.open(cli) as s:
        assert s.acks()["test-review-board"]["by"] == "alice"
        s.record(at(report, T0))
        s.record(at(report, T0 + timedelta(days=7), "weekly"))
    assert run(["-o", "json", "check", "history", "--period", "daily"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["database"] == str(cli / DB_NAME)
    assert [(r["period"], r["critical"], r["health_score"]) for r in out["runs"]] == [
        ("daily", report.summary.critical, report.summary.health_score)]
    assert run(["check", "history", "--limit", "5"]) == 0
    table = capsys.readouterr().out
    assert "weekly" in table and "daily" in table
    assert run(["check", "history", "--period", "hourly"]) == 2
