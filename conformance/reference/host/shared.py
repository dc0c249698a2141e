"""One client table kept exactly by several host processes (`kmsconf host --workers N`).

Each worker keeps the rules' in-memory table (state.ClientTable) and uses it only while it
holds the lock: a batch takes an exclusive flock (the kernel lets go of it if its holder dies,
even by `kill -9`), catches up with what the other workers recorded since its last batch,
records its own requests and publishes them before letting go. So the workers' records form
one sequence, each seeing every record before it, as one process would. Catching up replays
the others' records, (application, CMID, N, time), through the same rules.

SharedStore: the host's database file is the truth. The records go into a journal table in
the same transaction as the client rows; PRAGMA data_version tells whether anyone else
committed at all; a worker that fell further behind than the journal keeps reloads the table.

RingStore: with --db :memory: nothing has to outlive the host, so the records only go into a
ring in memory that the supervisor maps before it forks the workers (no SQLite write per
request). Idle workers keep up on a timer; one that falls a whole ring behind stops the host.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import uuid
from pathlib import Path

from .state import ClientTable
from .store import Store

JOURNAL = "CREATE TABLE IF NOT EXISTS journal (seq INTEGER PRIMARY KEY, app_id TEXT, cmid TEXT, n_policy INTEGER, now REAL)"
RECORD = "INSERT INTO journal VALUES (?, ?, ?, ?, ?)"
JOURNAL_KEEP = 4096  # records kept for workers catching up; trimmed every 1024


def lock_path(db: str | Path) -> str:
    return f"{db}-lock"


class _Lock:
    """The workers' one lock: an flock on a file next to the database."""

    def __init__(self, db: str | Path):
        self.fd = os.open(lock_path(db), os.O_RDWR | os.O_CREAT, 0o600)
        self.held = False

    def acquire(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self.fd)


class SharedStore(Store):
    def __init__(self, path: str | Path):
        if str(path) == ":memory:":
            raise ValueError("host workers share their client table through a database file, not :memory:")
        super().__init__(path)
        self.db.execute(JOURNAL)
        self._lock = _Lock(path)
        self._journal: list[tuple[int, str, str, int, float]] = []
        self._uuids: dict[str, uuid.UUID] = {}
        self._version = -1  # data_version when this worker last caught up
        self._position = 0  # the last journal record this worker's table includes

    def close(self) -> None:
        super().close()
        self._lock.close()

    def load_into(self, table: ClientTable) -> None:
        self._version = self._data_version()  # before the snapshot: a commit in between is caught up with later
        with self.db:
            self.db.execute("BEGIN")  # one snapshot of the table and the journal position
            super().load_into(table)
            self._position = self.db.execute("SELECT coalesce(max(seq), 0) FROM journal").fetchone()[0]

    def _data_version(self) -> int:
        return self.db.execute("PRAGMA data_version").fetchone()[0]

    def begin(self, table: ClientTable) -> None:
        self._lock.acquire()
        try:
            version = self._data_version()
            if version != self._version:
                self._catch_up(table)
                self._version = version
        except BaseException:
            self._lock.release()  # or every other worker would wait for it for ever
            raise

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
            self._lock.release()

    def rollback(self, table: ClientTable) -> None:
        try:
            self._journal = []
            super().rollback(table)  # reloads the table, and with it the journal position
        finally:
            self._lock.release()


_RING_RECORD = struct.Struct("<16s16sdI4x")  # application, CMID (bytes_le), time, N
_RING_HEAD = struct.Struct("<Q")  # records written so far, ever
RING_SIZE = 1 << 18  # 12 MB: at 20,000 requests/s, 13 s for an idle worker to keep up (it does every 0.25 s)


class Ring:
    """The records of all workers, in order, in anonymous shared memory: map it before forking them."""

    def __init__(self, size: int = RING_SIZE):
        self.size = size
        self.memory = mmap.mmap(-1, _RING_HEAD.size + size * _RING_RECORD.size)

    @property
    def head(self) -> int:
        return _RING_HEAD.unpack_from(self.memory, 0)[0]

    def read(self, position: int) -> tuple[bytes, bytes, float, int]:
        return _RING_RECORD.unpack_from(self.memory, _RING_HEAD.size + (position % self.size) * _RING_RECORD.size)

    def append(self, records: list[tuple[bytes, bytes, float, int]]) -> None:
        head = self.head
        for record in records:
            _RING_RECORD.pack_into(self.memory, _RING_HEAD.size + (head % self.size) * _RING_RECORD.size, *record)
            head += 1
        _RING_HEAD.pack_into(self.memory, 0, head)


class RingLapped(RuntimeError):
    """A worker fell a whole ring behind: it can no longer know the table."""


class RingStore(Store):
    """Settings in the (throwaway) database file; the client table shared through a Ring only."""

    def __init__(self, path: str | Path, ring: Ring):
        super().__init__(path)
        self.keeps_clients = False  # nobody will read them: the file goes when the host stops
        self.ring = ring
        self._lock = _Lock(path)
        self._pending: list[tuple[bytes, bytes, float, int]] = []
        self._uuids: dict[bytes, uuid.UUID] = {}
        self._position = 0  # the records this worker's table includes (the table starts empty with the host)

    def close(self) -> None:
        super().close()
        self._lock.close()

    def _uuid(self, raw: bytes) -> uuid.UUID:
        found = self._uuids.get(raw)
        if found is None:
            if len(self._uuids) > 65536:
                self._uuids.clear()
            found = self._uuids[raw] = uuid.UUID(bytes_le=raw)
        return found

    def begin(self, table: ClientTable) -> None:
        self._lock.acquire()
        head, ring = self.ring.head, self.ring
        if head - self._position > ring.size:
            self._lock.release()
            raise RingLapped(f"this worker fell {head - self._position} records behind, more than the ring's "
                             f"{ring.size}")
        for position in range(self._position, head):
            app, cmid, now, n_policy = ring.read(position)
            table.record(self._uuid(app), self._uuid(cmid), n_policy, now)
        self._position = head

    def note(self, app_id: uuid.UUID, cmid: uuid.UUID, now: float, capacity: int, rec, n_policy: int) -> None:
        self._pending.append((app_id.bytes_le, cmid.bytes_le, now, n_policy))

    def commit(self) -> None:
        try:
            if self._pending:
                self.ring.append(self._pending)
                self._position += len(self._pending)
                self._pending = []
        finally:
            self._lock.release()

    def rollback(self, table: ClientTable) -> None:
        """Start again from the ring's first record (the table of a host that started empty)."""
        self._pending = []
        table.reset()
        self._position = 0
        try:
            self.begin(table)
        finally:
            self._lock.release()

    def keep_up(self, table: ClientTable) -> None:
        """Catch up with the others (an idle worker, on a timer, so the ring never laps it)."""
        self.begin(table)
        self.commit()
