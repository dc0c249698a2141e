"""SQLite persistence of the host's client table and settings.

Every change is committed before the host answers, so an activation that was
answered survives `kill -9`. WAL with synchronous=NORMAL keeps that true for
process crashes (not power loss) at a fraction of FULL's cost.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

from .state import ClientTable, Entry, Recorded

SCHEMA = """
CREATE TABLE IF NOT EXISTS clients (app_id TEXT, cmid TEXT, last_seen REAL, PRIMARY KEY (app_id, cmid));
CREATE TABLE IF NOT EXISTS capacity (app_id TEXT PRIMARY KEY, capacity INTEGER);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT);
"""


class Store:
    def __init__(self, path: str | Path = ":memory:"):
        self.path = str(path)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        if self.path != ":memory:":
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self._capacities: dict[str, int] = dict(self.db.execute("SELECT app_id, capacity FROM capacity"))

    @classmethod
    def open_existing(cls, path: str | Path) -> "Store":
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no host database there (start `kmsconf host --db {path}` first)")
        return cls(path)

    def close(self) -> None:
        self.db.close()

    def load_into(self, table: ClientTable) -> None:
        capacities = dict(self.db.execute("SELECT app_id, capacity FROM capacity"))
        entries: dict[str, list[Entry]] = {}
        for app, cmid, seen in self.db.execute("SELECT app_id, cmid, last_seen FROM clients"):
            entries.setdefault(app, []).append(Entry(uuid.UUID(cmid), seen))
        for app in set(capacities) | set(entries):
            table.restore(uuid.UUID(app), capacities.get(app, 0), entries.get(app, []))

    def save_record(self, app_id: uuid.UUID, cmid: uuid.UUID, now: float, capacity: int, rec: Recorded) -> None:
        app = str(app_id)
        gone = [(app, str(c)) for c in rec.evicted + rec.expired]
        with self.db:  # one transaction, committed before the caller answers
            self.db.execute("BEGIN")
            self.db.execute("INSERT OR REPLACE INTO clients VALUES (?, ?, ?)", (app, str(cmid), now))
            if gone:
                self.db.executemany("DELETE FROM clients WHERE app_id = ? AND cmid = ?", gone)
            if self._capacities.get(app) != capacity:  # it changes rarely: skip the write when it did not
                self.db.execute("INSERT OR REPLACE INTO capacity VALUES (?, ?)", (app, capacity))
                self._capacities[app] = capacity

    def reset_clients(self) -> None:
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

    def summary(self, now: float, lifetime: float) -> dict[str, dict[str, int]]:
        """Per application: live count and capacity, read straight from the database."""
        out: dict[str, dict[str, int]] = {}
        for app, capacity in self.db.execute("SELECT app_id, capacity FROM capacity"):
            (count,) = self.db.execute(
                "SELECT COUNT(*) FROM clients WHERE app_id = ? AND last_seen > ?", (app, now - lifetime)
            ).fetchone()
            out[app] = {"count": count, "cache_size": capacity}
        return out
