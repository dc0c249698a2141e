"""The host's client table: the counting rules of the Volume Activation guide (PROTOCOL.md 10).

One table per ApplicationID (Windows and Office count separately). The count is
the number of live distinct CMIDs; capacity is twice the highest N policy seen
and never shrinks, up to 50 (no product's N is above 25: a request claiming more
does not grow the cache past it); an entry lives 30 days and a renewal restarts it;
beyond capacity the oldest entry goes.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

ENTRY_LIFETIME_SECONDS = 30 * 86400
MAX_CAPACITY = 2 * 25  # twice the highest N of any product (PROTOCOL.md 10.1, 16)


@dataclass
class Entry:
    cmid: uuid.UUID
    last_seen: float  # host clock, seconds since the epoch


@dataclass
class AppTable:
    capacity: int = 0
    # insertion order = age order: a renewal moves the CMID to the end
    entries: "OrderedDict[uuid.UUID, Entry]" = field(default_factory=OrderedDict)


@dataclass(slots=True)  # built on every request: no frozen-dataclass __setattr__ detour
class Recorded:
    count: int
    new_client: bool
    evicted: tuple[uuid.UUID, ...]
    expired: tuple[uuid.UUID, ...]
    renewed: bool = False  # a known CMID whose entry restarted (moved to the young end)


class ClientTable:
    """Pure rules, no I/O; `store.py` persists what `record` changes."""

    def __init__(self, lifetime: float = ENTRY_LIFETIME_SECONDS, *, max_capacity: int = MAX_CAPACITY):
        self.lifetime = lifetime
        self.max_capacity = max_capacity
        self.apps: dict[uuid.UUID, AppTable] = {}

    def _purge(self, table: AppTable, now: float) -> list[uuid.UUID]:
        """Drop the entries older than the lifetime; their CMIDs."""
        gone = []
        for cmid, entry in table.entries.items():
            if now - entry.last_seen < self.lifetime:
                break  # ordered by age: the rest are younger
            gone.append(cmid)
        for cmid in gone:
            del table.entries[cmid]
        return gone

    def record(self, app_id: uuid.UUID, cmid: uuid.UUID, n_policy: int, now: float) -> Recorded:
        table = self.apps.get(app_id)
        if table is None:
            table = self.apps[app_id] = AppTable()
        if 2 * n_policy > table.capacity:
            table.capacity = min(2 * n_policy, self.max_capacity)
        expired = self._purge(table, now)
        new_client = cmid not in table.entries
        if new_client:
            table.entries[cmid] = Entry(cmid, now)
            renewed = False
        else:
            renewed = self._renew(table.entries, cmid, now)
        evicted = []
        while len(table.entries) > max(table.capacity, 1):
            evicted.append(table.entries.popitem(last=False)[0])
        return Recorded(len(table.entries), new_client, tuple(evicted), tuple(expired), renewed)

    def _renew(self, entries: "OrderedDict[uuid.UUID, Entry]", cmid: uuid.UUID, now: float) -> bool:
        """A known client again: its entry restarts, at the young end. True: it did."""
        entries.move_to_end(cmid)
        entries[cmid] = Entry(cmid, now)
        return True

    def count(self, app_id: uuid.UUID, now: float) -> int:
        table = self.apps.get(app_id)
        if table is None:
            return 0
        self._purge(table, now)
        return len(table.entries)

    def capacity(self, app_id: uuid.UUID) -> int:
        table = self.apps.get(app_id)
        return table.capacity if table else 0

    def restore(self, app_id: uuid.UUID, capacity: int, entries: list[Entry]) -> None:
        table = self.apps.setdefault(app_id, AppTable())
        table.capacity = max(table.capacity, capacity)
        for entry in sorted(entries, key=lambda e: e.last_seen):
            table.entries[entry.cmid] = entry

    def reset(self) -> None:
        self.apps.clear()
