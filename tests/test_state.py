"""The host's counting rules (reference/host/state.py) and their SQLite persistence (reference/host/store.py)."""

import sqlite3
import uuid


from conformance.faults.quirks import Quirk
from conformance.faults.service import FaultyClientTable
from conformance.reference.host.state import ENTRY_LIFETIME_SECONDS, ClientTable, Entry
from conformance.reference.host.status import read_status
from conformance.reference.host.store import Store

WINDOWS = uuid.UUID("55c92734-d682-4d71-983e-d6ec3f16059f")
OFFICE = uuid.UUID("59a52881-a989-479d-af46-f275c6370663")
DAY = 86400


def fill(table: ClientTable, n: int, clients: int, now: float = 0.0, app=WINDOWS) -> list[uuid.UUID]:
    cmids = [uuid.uuid4() for _ in range(clients)]
    for cmid in cmids:
        table.record(app, cmid, n, now)
    return cmids


def test_each_new_cmid_counts_once():
    table = ClientTable()
    got = [table.record(WINDOWS, uuid.uuid4(), 25, 0.0) for _ in range(3)]
    assert [r.count for r in got] == [1, 2, 3]
    assert all(r.new_client for r in got)


def test_a_repeat_does_not_count():
    table = ClientTable()
    cmid = uuid.uuid4()
    table.record(WINDOWS, cmid, 25, 0.0)
    again = table.record(WINDOWS, cmid, 25, 60.0)
    assert (again.count, again.new_client) == (1, False)


def test_applications_count_apart():
    table = ClientTable()
    fill(table, 25, 3)
    fill(table, 5, 2, app=OFFICE)
    assert (table.count(WINDOWS, 0.0), table.count(OFFICE, 0.0)) == (3, 2)


def test_capacity_is_twice_the_highest_n_and_grows_from_10_to_50():
    table = ClientTable()
    fill(table, 5, 12)
    assert (table.capacity(WINDOWS), table.count(WINDOWS, 0.0)) == (10, 10)
    counts = [table.record(WINDOWS, uuid.uuid4(), 25, 0.0).count for _ in range(42)]
    assert table.capacity(WINDOWS) == 50
    assert counts == list(range(11, 51)) + [50, 50]


def test_the_cache_never_shrinks():
    table = ClientTable()
    fill(table, 25, 50)
    later = [table.record(WINDOWS, uuid.uuid4(), 5, 0.0).count for _ in range(12)]
    assert table.capacity(WINDOWS) == 50
    assert later == [50] * 12


def test_a_full_cache_evicts_the_oldest_entry():
    table = ClientTable()
    cmids = fill(table, 5, 10)
    newcomer = uuid.uuid4()
    got = table.record(WINDOWS, newcomer, 5, 1.0)
    assert (got.count, got.new_client, got.evicted) == (10, True, (cmids[0],))
    # a renewal makes an entry the youngest, so the next eviction takes the one after it
    table.record(WINDOWS, cmids[1], 5, 2.0)
    assert table.record(WINDOWS, uuid.uuid4(), 5, 3.0).evicted == (cmids[2],)


def test_an_entry_expires_after_30_days():
    assert ENTRY_LIFETIME_SECONDS == 30 * DAY
    table = ClientTable()
    cmids = fill(table, 5, 3, now=0.0)
    assert table.count(WINDOWS, 30 * DAY - 1) == 3
    later = table.record(WINDOWS, uuid.uuid4(), 5, 30 * DAY + 1)
    assert later.count == 1
    assert set(later.expired) == set(cmids)


def test_a_renewal_restarts_the_30_days():
    table = ClientTable()
    renewed, other = fill(table, 5, 2, now=0.0)
    table.record(WINDOWS, renewed, 5, 20 * DAY)
    assert table.count(WINDOWS, 31 * DAY) == 1  # the other one is gone
    back = table.record(WINDOWS, renewed, 5, 31 * DAY)
    assert (back.count, back.new_client) == (1, False)
    assert table.count(WINDOWS, 50 * DAY - 1) == 1  # 30 days from the day-31 renewal
    assert table.count(WINDOWS, 61 * DAY) == 0


def test_quirk_switches_keep_entries_or_their_first_time():
    # the faults the suite must catch: no aging at all; a renewal that does not restart the 30 days
    forever = FaultyClientTable(frozenset({Quirk.NO_EXPIRY}))
    fill(forever, 5, 2, now=0.0)
    assert forever.count(WINDOWS, 365 * DAY) == 2
    stale = FaultyClientTable(frozenset({Quirk.NO_RENEWAL_REPLACE}))
    renewed, _ = fill(stale, 5, 2, now=0.0)
    stale.record(WINDOWS, renewed, 5, 20 * DAY)
    assert stale.count(WINDOWS, 31 * DAY) == 0


def test_restore_orders_by_age_and_keeps_the_larger_capacity():
    table = ClientTable()
    old, young = Entry(uuid.uuid4(), 100.0), Entry(uuid.uuid4(), 200.0)
    table.restore(WINDOWS, 2, [young, old])
    table.restore(WINDOWS, 1, [])
    assert table.capacity(WINDOWS) == 2
    assert table.record(WINDOWS, uuid.uuid4(), 1, 300.0).evicted == (old.cmid,)


def test_reset_empties_every_application():
    table = ClientTable()
    fill(table, 25, 3)
    fill(table, 5, 3, app=OFFICE)
    table.reset()
    assert (table.count(WINDOWS, 0.0), table.capacity(WINDOWS), table.count(OFFICE, 0.0)) == (0, 0, 0)


# --- persistence: a real SQLite file, closed and reopened ---

def record(table: ClientTable, store: Store, app, cmid, n, now):
    rec = table.record(app, cmid, n, now)
    store.note(app, cmid, now, table.capacity(app), rec, n)
    store.commit()
    return rec


def test_store_reopen_gives_the_same_counts(tmp_path):
    path = tmp_path / "host.sqlite"
    store, table = Store(path), ClientTable()
    for i in range(12):
        record(table, store, WINDOWS, uuid.uuid4(), 5, float(i))  # 2 evicted: the database must drop them too
    for i in range(3):
        record(table, store, OFFICE, uuid.uuid4(), 5, float(i))
    store.close()

    reopened, restored = Store(path), ClientTable()
    reopened.load_into(restored)
    for app in (WINDOWS, OFFICE):
        assert restored.count(app, 20.0) == table.count(app, 20.0)
        assert restored.capacity(app) == table.capacity(app)
    assert [e.cmid for e in restored.apps[WINDOWS].entries.values()] == list(table.apps[WINDOWS].entries)
    reopened.close()
    windows = read_status(path, now=20.0)["applications"][str(WINDOWS)]
    assert windows == {"count": 10, "cache_size": 10}
    rows = sqlite3.connect(path).execute("SELECT COUNT(*) FROM clients WHERE app_id = ?", (str(WINDOWS),)).fetchone()
    assert rows == (10,)


def test_store_keeps_renewals_and_drops_expired_entries(tmp_path):
    path = tmp_path / "host.sqlite"
    store, table = Store(path), ClientTable()
    renewed, other = uuid.uuid4(), uuid.uuid4()
    record(table, store, WINDOWS, renewed, 5, 0.0)
    record(table, store, WINDOWS, other, 5, 0.0)
    record(table, store, WINDOWS, renewed, 5, 20 * DAY)
    record(table, store, WINDOWS, uuid.uuid4(), 5, 31 * DAY)  # purges `other` in memory and on disk
    store.close()
    reopened, restored = Store(path), ClientTable()
    reopened.load_into(restored)
    assert set(restored.apps[WINDOWS].entries) == set(table.apps[WINDOWS].entries)
    assert other not in restored.apps[WINDOWS].entries
    assert restored.apps[WINDOWS].entries[renewed].last_seen == 20 * DAY
    reopened.close()


def test_store_settings_and_reset_survive_reopen(tmp_path):
    path = tmp_path / "host.sqlite"
    store = Store(path)
    assert store.db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    store.put("hwid", "3a1c049600b60076")
    table = ClientTable()
    record(table, store, WINDOWS, uuid.uuid4(), 25, 0.0)
    store.reset_clients()
    store.close()
    reopened, restored = Store(path), ClientTable()
    reopened.load_into(restored)
    assert reopened.get("hwid") == "3a1c049600b60076"
    assert reopened.get("missing", 7) == 7
    assert restored.count(WINDOWS, 0.0) == 0 and restored.capacity(WINDOWS) == 0
    reopened.close()


def test_a_request_claiming_a_higher_n_does_not_grow_the_cache_past_50():
    """No product's N is above 25 (PROTOCOL.md 16): a count above 50 is one no genuine host reports (KMS-THR-005)."""
    table = ClientTable()
    table.record(WINDOWS, uuid.uuid4(), 40, 0.0)
    counts = [table.record(WINDOWS, uuid.uuid4(), 25, float(i)).count for i in range(1, 61)]
    assert table.capacity(WINDOWS) == 50 and max(counts) == 50
    wide = ClientTable(max_capacity=1000)
    wide.record(WINDOWS, uuid.uuid4(), 40, 0.0)
    assert wide.capacity(WINDOWS) == 80  # --max-cache: a load test may count more distinct clients
