"""The workers' shared client table (reference/host/shared.py): two stores over one real SQLite file or one real
shared-memory ring, used in turn as two workers would, count exactly as one table fed the same records."""

import random
import uuid

import pytest

from conformance.reference.host.shared import Ring, RingLapped, RingStore, SharedStore
from conformance.reference.host.state import ClientTable

APPS = [uuid.UUID("55c92734-d682-4d71-983e-d6ec3f16059f"), uuid.UUID("59a52881-a989-479d-af46-f275c6370663")]
DAY = 86400


def record(store, table, app, cmid, n, now) -> int:
    """One request as the service counts it: begin (catch up), record, note, commit."""
    store.begin(table)
    rec = table.record(app, cmid, n, now)
    store.note(app, cmid, now, table.capacity(app), rec, n)
    store.commit()
    return rec.count


def requests(seed: int, count: int = 600):
    """Renewals, new clients, both Ns, days passing (expiry), in a fixed random order."""
    rng = random.Random(seed)
    known: list[uuid.UUID] = []
    now = 1_800_000_000.0
    for _ in range(count):
        now += rng.choice((1.0, 60.0, 3 * DAY))
        if known and rng.random() < 0.4:
            cmid = rng.choice(known)
        else:
            cmid = uuid.UUID(int=rng.getrandbits(128), version=4)
            known.append(cmid)
        yield rng.choice(APPS), cmid, rng.choice((5, 25)), now


def stores(kind, tmp_path, count):
    if kind == "database":
        return [SharedStore(tmp_path / "host.sqlite") for _ in range(count)]
    ring = Ring(size=4096)
    return [RingStore(tmp_path / "settings.sqlite", ring) for _ in range(count)]


@pytest.mark.parametrize("kind", ["database", "ring"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_two_workers_count_as_one_table(tmp_path, kind, seed):
    workers = stores(kind, tmp_path, 2)  # one database path: one lock file, as a host's workers have
    tables = [ClientTable(), ClientTable()]
    for store, table in zip(workers, tables):
        store.load_into(table)
    model = ClientTable()
    rng = random.Random(seed)
    for app, cmid, n, now in requests(seed):
        w = rng.randrange(2)
        got = record(workers[w], tables[w], app, cmid, n, now)
        assert got == model.record(app, cmid, n, now).count
    for store, table in zip(workers, tables):
        store.begin(table)  # the last records of the other one
        store.commit()
        for app in APPS:
            assert list(table.apps[app].entries) == list(model.apps[app].entries)
            assert table.capacity(app) == model.capacity(app)
    if kind == "database":  # and the database holds that table for a restart
        restored = ClientTable()
        SharedStore(tmp_path / "host.sqlite").load_into(restored)
        for app in APPS:
            assert list(restored.apps[app].entries) == list(model.apps[app].entries)


def test_a_worker_lapped_by_the_ring_knows_it(tmp_path):
    ring = Ring(size=8)
    busy, idle = RingStore(tmp_path / "host.sqlite", ring), RingStore(tmp_path / "host.sqlite", ring)
    busy_table, idle_table = ClientTable(), ClientTable()
    for i in range(9):
        record(busy, busy_table, APPS[0], uuid.uuid4(), 25, 1_800_000_000.0 + i)
    with pytest.raises(RingLapped, match="9 records behind"):
        idle.begin(idle_table)
    assert not idle._lock.held


def test_a_worker_behind_a_trimmed_journal_reloads_the_table(tmp_path):
    """The journal keeps JOURNAL_KEEP records; a worker further behind starts again from the table itself."""
    from conformance.reference.host.shared import JOURNAL_KEEP

    busy, idle = SharedStore(tmp_path / "host.sqlite"), SharedStore(tmp_path / "host.sqlite")
    busy_table, idle_table, model = ClientTable(), ClientTable(), ClientTable()
    busy.load_into(busy_table)
    idle.load_into(idle_table)
    for app, cmid, n, now in requests(7, count=JOURNAL_KEEP + 1500):
        assert record(busy, busy_table, app, cmid, n, now) == model.record(app, cmid, n, now).count
    (oldest,) = busy.db.execute("SELECT min(seq) FROM journal").fetchone()
    assert oldest > 1, "the journal was trimmed"
    idle.begin(idle_table)
    idle.commit()
    for app in APPS:
        assert list(idle_table.apps[app].entries) == list(model.apps[app].entries)
        assert idle_table.capacity(app) == model.capacity(app)
