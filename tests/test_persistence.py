"""Crash safety with a real process and a real kill: every answered activation survives `kill -9`."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid

import pytest

from conformance import catalog
from conformance.reference.client.activation import activate
from conformance.wire.requests import build_request

EDITION = "Windows Server 2019 Datacenter"
N_POLICY = 1000  # with --max-cache 2000: larger than any load before the kill, so every answered CMID stays in it


def start_host(db, *extra):
    """The host in a session of its own: with --workers, `killpg` kills the supervisor and every worker at once."""
    proc = subprocess.Popen([sys.executable, "-m", "conformance.cli", "host", "--listen", "127.0.0.1:0", "--db", str(db),
                             "--max-cache", "2000", *extra], stdout=subprocess.PIPE, text=True, start_new_session=True)
    line = proc.stdout.readline()
    assert "listening on" in line, line
    host, port = line.rsplit(" ", 1)[1].strip().rsplit(":", 1)
    return proc, host, int(port)


def host_status(db) -> dict:
    out = subprocess.run([sys.executable, "-m", "conformance.cli", "host-status", "--db", str(db), "--json"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


@pytest.mark.parametrize("workers", ["1", "4"])
def test_kill_9_during_load_keeps_every_answered_activation(tmp_path, workers):
    db = tmp_path / "host.sqlite"
    proc, host, port = start_host(db, "--workers", workers)
    edition = catalog.load().edition(EDITION)
    answered: list[uuid.UUID] = []
    stop = threading.Event()

    def load():
        while not stop.is_set():
            cmid = uuid.uuid4()
            try:
                result = activate(host, port, build_request(edition, cmid=cmid, n_policy=N_POLICY), timeout=2)
            except OSError:
                return  # the host died under us
            if result.verified:
                answered.append(cmid)

    loaders = [threading.Thread(target=load) for _ in range(4)]
    for w in loaders:
        w.start()
    deadline = time.monotonic() + 30
    while len(answered) < 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-load, every process of the host at once, no chance to flush anything
    proc.wait(10)
    stop.set()
    for w in loaders:
        w.join(10)
    assert len(answered) >= 30, "the load never got going"
    # the cache (2 x N) holds every CMID answered: each must be in the database
    status = host_status(db)
    assert status["count"] >= len(answered), f"{len(answered)} answered, database counts {status['count']}"
    with sqlite3.connect(db) as table:
        kept = {uuid.UUID(row[0]) for row in table.execute("SELECT cmid FROM clients")}
    assert not set(answered) - kept, f"{len(set(answered) - kept)} answered activations lost"

    proc, host, port = start_host(db, "--workers", workers)
    try:
        again = activate(host, port, build_request(edition, cmid=answered[-1], n_policy=N_POLICY), timeout=5)
        assert again.verified and again.response.response.count >= len(answered), again.problems
    finally:
        proc.terminate()
        proc.wait(10)


def test_restart_keeps_count_epid_and_hwid(tmp_path):
    db = tmp_path / "host.sqlite"
    edition = catalog.load().edition(EDITION)
    proc, host, port = start_host(db, "--activation-interval", "60")
    try:
        first = [activate(host, port, build_request(edition)) for _ in range(3)]
    finally:
        proc.terminate()
        assert proc.wait(10) == 0, "SIGTERM must stop the host cleanly"
    proc, host, port = start_host(db, "--activation-interval", "60")
    try:
        after = activate(host, port, build_request(edition))
    finally:
        proc.terminate()
        proc.wait(10)
    assert after.response.response.count == 4
    assert after.response.response.epid == first[0].response.response.epid
    assert after.response.hwid == first[0].response.hwid
    status = host_status(db)
    assert (status["count"], status["cache_size"], status["activation_interval"]) == (4, 10, 60)
