"""`kmsconf host --workers N`: several processes on one port keep one client table, exactly (real processes,
real TCP, one SQLite file)."""

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid

import pytest

from conformance import loadgen
from conformance.dns.lab import DnsLab, find_named
from conformance.dns.srv import query_srv

PRODUCT = "Windows 10/11 Enterprise"
N_POLICY = 500  # with --max-cache 1000, a cache of 1000: every one of 1,000 new CMIDs raises the count, each once


def host_status(db) -> dict:
    out = subprocess.run([sys.executable, "-m", "conformance.cli", "host-status", "--db", str(db), "--json"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def drive(host, cmids, n_policy=N_POLICY) -> loadgen.LoadResult:
    """One request per connection, 64 at a time: the kernel spreads the connections over the workers."""
    batches = [[loadgen.request_pdu(PRODUCT, cmid, n_policy)] for cmid in cmids]
    result = asyncio.run(loadgen.run(host.host, host.port, batches, concurrency=64))
    assert (result.answered, result.failed) == (len(cmids), 0)
    return result


def worker_pids(supervisor: int) -> list[int]:
    with open(f"/proc/{supervisor}/task/{supervisor}/children") as children:
        return [int(pid) for pid in children.read().split()]


@pytest.mark.parametrize("database", ["file", ":memory:"])
def test_a_thousand_cmids_through_four_workers_count_as_one_table(tmp_path, database):
    """A database file (SharedStore), or none (RingStore: the table shared in memory only)."""
    db, events = tmp_path / "host.sqlite" if database == "file" else database, tmp_path / "events.jsonl"
    host = loadgen.HostProcess.start(tmp_path / "host.log", ("--workers", "4", "--db", str(db), "--max-cache", "1000",
                                                             "--event-log", str(events)), control=False)
    first, newcomers = [uuid.uuid4() for _ in range(1000)], [uuid.uuid4() for _ in range(1000)]
    try:
        assert len(worker_pids(host.pid)) == 4
        counted = drive(host, first)
        assert sorted(counted.counts) == list(range(1, 1001)), \
            "1,000 new CMIDs must get the counts 1..1000, each once: one table, one sequence, across the workers"
        renewed = drive(host, first)
        assert set(renewed.counts) == {1000}, "a renewal is no new client, whichever worker saw it before"
        full = drive(host, newcomers)
        assert set(full.counts) == {1000}, "a full cache of 1000: each newcomer takes the oldest one's place"
    finally:
        assert host.stop(), "the host did not stop cleanly on SIGTERM"
    if database == "file":
        status = host_status(db)
        assert (status["count"], status["cache_size"]) == (1000, 1000)
        with sqlite3.connect(db) as table:
            kept = {uuid.UUID(row[0]) for row in table.execute("SELECT cmid FROM clients")}
        assert kept == set(newcomers), "the cache holds exactly the 1,000 youngest entries"
    served_by = {json.loads(line).get("worker") for line in events.read_text().splitlines()}
    assert served_by == {0, 1, 2, 3}, f"the requests were not spread over the 4 workers: {served_by}"


def test_workers_go_when_their_supervisor_is_killed(tmp_path):
    host = loadgen.HostProcess.start(tmp_path / "host.log", ("--workers", "2"), control=False)
    workers = worker_pids(host.pid)
    assert len(workers) == 2
    scratch = {os.path.dirname(os.readlink(f"/proc/{workers[0]}/fd/{fd}")) for fd in os.listdir(f"/proc/{workers[0]}/fd")
               if "kmsconf-host-" in os.readlink(f"/proc/{workers[0]}/fd/{fd}")}
    assert len(scratch) == 1, scratch  # the throwaway database of --db :memory:
    os.kill(host.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(loadgen.proc_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(loadgen.proc_alive(pid) for pid in workers), "orphaned workers kept serving"
    assert not os.path.exists(scratch.pop()), "the workers left the throwaway database behind"


def test_a_dead_worker_stops_the_host(tmp_path):
    host = loadgen.HostProcess.start(tmp_path / "host.log", ("--workers", "2"), control=False)
    try:
        os.kill(worker_pids(host.pid)[0], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while loadgen.proc_alive(host.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not loadgen.proc_alive(host.pid), "the supervisor went on with a worker short"
        assert "exited (-9); stopping the others" in (tmp_path / "host.log").read_text()
    finally:
        host.stop()


def test_control_channel_needs_one_worker():
    done = subprocess.run([sys.executable, "-m", "conformance.cli", "host", "--listen", "127.0.0.1:0", "--control",
                           "--workers", "2"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "--control needs --workers 1" in done.stderr


@pytest.mark.skipif(find_named() is None, reason="BIND's named not installed (make setup installs bind9)")
def test_workers_publish_once_and_unpublish_on_exit(tmp_path):
    """The supervisor, not each worker, publishes the SRV record (and removes it on a clean stop)."""
    with DnsLab(zones=("kms.test",)) as lab:
        dns = f"{lab.address[0]}:{lab.address[1]}"
        host = loadgen.HostProcess.start(tmp_path / "host.log", ("--workers", "2", "--dns-publish", "--dns-server", dns,
                                                                 "--dns-domain", "kms.test", "--dns-unpublish-on-exit"),
                                         control=False)
        try:
            log = (tmp_path / "host.log").read_text()
            deadline = time.monotonic() + 10
            while "DNS:" not in log and time.monotonic() < deadline:
                time.sleep(0.05)
                log = (tmp_path / "host.log").read_text()
            assert "DNS: published in kms.test (NOERROR)" in log
            assert [(r.target, r.port) for r in query_srv("kms.test", lab.address)] == [("kms.kms.test.", host.port)]
        finally:
            assert host.stop(), "the host did not stop cleanly"
        assert query_srv("kms.test", lab.address) == []
