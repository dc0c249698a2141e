"""One client table kept exactly by several host processes (`kmsconf host --workers N`).

The table lives in one SQLite file (WAL). Each worker keeps the rules' in-memory table
(state.ClientTable) and uses it only while it holds the lock: a batch takes an exclusive
flock (the kernel lets go of it if its holder dies, even by `kill -9`), catches up with
what the other workers committed since its last batch, records its own requests and
commits them in one transaction before letting go. So the workers' records form one
sequence, each seeing every record before it, as one process would.

Catching up replays the others' records through the same rules, from a journal table of
(application, CMID, N, time) written in the same transaction as the client rows; PRAGMA
data_version tells whether anyone else committed at all. A worker that fell further behind
than the journal keeps reloads the whole table.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from pathlib import Path

from .state import ClientTable
from .store import Store

JOURNAL = "CREATE TABLE IF NOT EXISTS journal (seq INTEGER PRIMARY KEY, app_id TEXT, cmid TEXT, n_policy INTEGER, now REAL)"
RECORD = "INSERT INTO journal VALUES (?, ?, ?, ?, ?)"
JOURNAL_KEEP = 4096  # records kept for workers catching up; trimmed every 1024


def lock_path(db: str | Path) -> str:
    return f"{db}-lock"


class SharedStore(Store):
    def __init__(self, path: str | Path):
        if str(path) == ":memory:":
            raise ValueError("host workers share their client table through a database file, not :memory:")
        super().__init__(path)
        self.db.execute(JOURNAL)
        self._lock = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o600)
        self._locked = False
        self._journal: list[tuple[int, str, str, int, float]] = []
        self._uuids: dict[str, uuid.UUID] = {}
        self._version = -1  # data_version when this worker last caught up
        self._position = 0  # the last journal record this worker's table includes

    def close(self) -> None:
        super().close()
        os.close(self._lock)

    def load_into(self, table: ClientTable) -> None:
        self._version = self._data_version()  # before the snapshot: a commit in between is caught up with later
        with self.db:
            self.db.execute("BEGIN")  # one snapshot of the table and the journal position
            super().load_into(table)
            self._position = self.db.execute("SELECT coalesce(max(seq), 0) FROM journal").fetchone()[0]

    def _data_version(self) -> int:
        return self.db.execute("PRAGMA data_version").fetchone()[0]

    def begin(self, table: ClientTable) -> None:
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self._locked = True
        version = self._data_version()
        if version != self._version:
            self._catch_up(table)
            self._version = version

    def _uuid(self, text: str) -> uuid.UUID:
        found = self._uuids.get(text)
        if found is None:
            if len(self._uuids) > 65536:
                self._uuids.clear()
            found = self._uuids[text] = uuid.UUID(text)
        return found

    def _catch_up(self, table: ClientTable) -> None:
        rows = self.db.execute("SELECT seq, app_id, cmid, n_policy, now FROM journal WHERE seq > ? ORDER BY seq",
                               (self._position,)).fetchall()
        if not rows:
            return  # a change that is not a record (settings)
        if rows[0][0] != self._position + 1:  # the journal was trimmed past this worker: start again from the table
            table.reset()
            self._capacities = dict(self.db.execute("SELECT app_id, capacity FROM capacity"))
            self.load_into(table)
            return
        for seq, app, cmid, n_policy, now in rows:
            table.record(self._uuid(app), self._uuid(cmid), n_policy, now)
            self._capacities[app] = table.capacity(self._uuid(app))  # what the other worker wrote
        self._position = rows[-1][0]

    def _noted(self, app: str, cmid: str, n_policy: int, now: float) -> None:
        self._position += 1
        self._seq = self._position - 1  # a client row written for this record takes the record's number
        self._journal.append((self._position, app, cmid, n_policy, now))

    def commit(self) -> None:
        try:
            journal, self._journal = self._journal, []
            if journal:
                self._ops.extend((RECORD, row) for row in journal)
                if journal[-1][0] // 1024 != (journal[0][0] - 1) // 1024:  # the batch passed a multiple of 1024
                    self._ops.append(("DELETE FROM journal WHERE seq <= ?", (journal[-1][0] - JOURNAL_KEEP,)))
            super().commit()
        finally:
            self._unlock()

    def rollback(self, table: ClientTable) -> None:
        try:
            self._journal = []
            super().rollback(table)  # reloads the table, and with it the journal position
        finally:
            self._unlock()

    def _unlock(self) -> None:
        if self._locked:
            self._locked = False
            fcntl.flock(self._lock, fcntl.LOCK_UN)
