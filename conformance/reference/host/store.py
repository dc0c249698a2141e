"""SQLite persistence of the host's client table and settings.

Every change is committed before the host answers, so an activation that was
answered survives `kill -9`. WAL with synchronous=NORMAL keeps that true for
process crashes (not power loss) at a fraction of FULL's cost.

Changes are noted as they happen and written by `commit`: the host commits once per
event-loop turn for all the requests of that turn (group commit), and each change is one
statement (a newcomer that takes the oldest entry's place is one UPDATE, not an insert
and a delete), so a turn with one request is one statement in its own transaction.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

from .state import ClientTable, Entry, Recorded
from .status import NotAHostDatabase, check_host_database

SCHEMA = """
CREATE TABLE IF NOT EXISTS clients (app_id TEXT, cmid TEXT, last_seen REAL, seq INTEGER, PRIMARY KEY (app_id, cmid))
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS capacity (app_id TEXT PRIMARY KEY, capacity INTEGER);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, record TEXT);
"""
EVENT = "INSERT INTO events (record) VALUES (?)"
EVENTS_KEPT = 1000  # the last requests, as the event log would show them (host-status reads them)
PRUNE = "DELETE FROM events WHERE seq <= (SELECT max(seq) FROM events) - ?"

# seq orders entries by age where last_seen ties: an entry replaced in place keeps its rowid
INSERT = "INSERT OR REPLACE INTO clients VALUES (?, ?, ?, ?)"
TAKE_PLACE = "UPDATE clients SET cmid = ?, last_seen = ?, seq = ? WHERE app_id = ? AND cmid = ?"
RENEW = "UPDATE clients SET last_seen = ?, seq = ? WHERE app_id = ? AND cmid = ?"
DELETE = "DELETE FROM clients WHERE app_id = ? AND cmid = ?"
CAPACITY = "INSERT OR REPLACE INTO capacity VALUES (?, ?)"


class StoreUnusable(Exception):
    """The host cannot keep its client table in --db: one line, and the exit status: 1 when the disk is full or
    failing, 2 when the path itself is wrong (a directory that is not there, no permission)."""

    def __init__(self, path: str, error: sqlite3.Error):
        name = getattr(error, "sqlite_errorname", "")
        self.status = 1 if name.startswith(("SQLITE_FULL", "SQLITE_IOERR")) else 2
        why = {"SQLITE_FULL": "the disk is full"}.get(name, "cannot write to the disk" if self.status == 1
                                                       else "cannot write there")
        super().__init__(f"--db {path}: {why} ({error})")


class Store:
    def __init__(self, path: str | Path = ":memory:"):
        self.path = str(path)
        # an in-memory database dies with the process and nobody else can open it: the table is
        # in memory already, so its rows are not written there (settings still are)
        self.keeps_clients = self.path != ":memory:"
        if self.keeps_clients:
            try:  # another program's file is refused before a byte is written
                check_host_database(self.path)
            except NotAHostDatabase as exc:
                raise NotAHostDatabase(f"--db {exc}") from None
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        if self.path != ":memory:":
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        if "seq" not in {row[1] for row in self.db.execute("PRAGMA table_info(clients)")}:
            self.db.execute("ALTER TABLE clients ADD COLUMN seq INTEGER")  # a database from before seq
        self._capacities: dict[str, int] = dict(self.db.execute("SELECT app_id, capacity FROM capacity"))
        self._seq: int = self.db.execute("SELECT coalesce(max(seq), 0) FROM clients").fetchone()[0]
        self._ops: list[tuple[str, tuple]] = []  # statements of the open batch, in order
        self._events = 0  # written since the last pruning
        self._apps: dict[uuid.UUID, str] = {}  # application ids as text: a handful, written on every request

    def close(self) -> None:
        self.db.close()

    def load_into(self, table: ClientTable) -> None:
        capacities = dict(self.db.execute("SELECT app_id, capacity FROM capacity"))
        entries: dict[str, list[Entry]] = {}
        for app, cmid, seen in self.db.execute("SELECT app_id, cmid, last_seen FROM clients ORDER BY last_seen, seq"):
            entries.setdefault(app, []).append(Entry(uuid.UUID(cmid), seen))
        for app in set(capacities) | set(entries):
            table.restore(uuid.UUID(app), capacities.get(app, 0), entries.get(app, []))

    # --- one batch: begin, note each change, commit (or roll back) ---
    def begin(self, table: ClientTable) -> None:
        """Before a batch's first change; one process alone has nothing to catch up with."""

    def note(self, app_id: uuid.UUID, cmid: uuid.UUID, now: float, capacity: int, rec: Recorded,
             n_policy: int) -> None:
        """What `ClientTable.record` changed, as the statements that will write it."""
        if not self.keeps_clients:
            return
        app = self._apps.get(app_id)
        if app is None:
            app = self._apps[app_id] = str(app_id)
        cm = str(cmid)
        self._noted(app, cm, n_policy, now)
        gone = rec.evicted + rec.expired
        if rec.new_client or rec.renewed:
            self._seq += 1
            if not rec.new_client or cmid in gone:  # its row is there: a renewal, or an entry that expired and is back
                gone = tuple(c for c in gone if c != cmid)
                self._ops.append((RENEW, (now, self._seq, app, cm)))
            elif gone:  # the newcomer takes the place of the entry it pushed out
                self._ops.append((TAKE_PLACE, (cm, now, self._seq, app, str(gone[0]))))
                gone = gone[1:]
            else:
                self._ops.append((INSERT, (app, cm, now, self._seq)))
        for old in gone:
            self._ops.append((DELETE, (app, str(old))))
        if self._capacities.get(app) != capacity:  # it changes rarely: skip the write when it did not
            self._ops.append((CAPACITY, (app, capacity)))
            self._capacities[app] = capacity

    def _noted(self, app: str, cmid: str, n_policy: int, now: float) -> None:
        """Each record as it is noted (the workers' journal)."""

    def note_event(self, record: dict) -> None:
        """A request's event (12290) with the batch that counts it, so that it lands in the same transaction."""
        if not self.keeps_clients:
            return
        self._ops.append((EVENT, (json.dumps(record),)))
        self._events += 1
        if self._events >= EVENTS_KEPT // 4:
            self._ops.append((PRUNE, (EVENTS_KEPT,)))
            self._events = 0

    def commit(self) -> None:
        """Write the batch: one statement on its own, else one transaction (runs of a statement: one executemany)."""
        ops, self._ops = self._ops, []
        if len(ops) == 1:
            self.db.execute(*ops[0])
        elif ops:
            with self.db:
                self.db.execute("BEGIN")
                for sql, run in itertools.groupby(ops, key=lambda op: op[0]):
                    self.db.executemany(sql, [args for _, args in run])

    def rollback(self, table: ClientTable) -> None:
        """A batch failed: drop its changes, and put the table back as the database has it (an in-memory
        database has no rows to go back to: the table stays as it is)."""
        self._ops = []  # every transaction ran in `with self.db`, which rolled it back
        if self.keeps_clients:
            self._capacities = dict(self.db.execute("SELECT app_id, capacity FROM capacity"))
            table.reset()
            self.load_into(table)

    def reset_clients(self) -> None:
        self._ops = []
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM clients")
            self.db.execute("DELETE FROM capacity")
        self._capacities.clear()

    def get(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def put(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, json.dumps(value)))
