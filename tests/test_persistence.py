"""Crash safety with a real process and a real kill: every answered activation survives `kill -9`."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

from conformance import catalog
from conformance.reference.client import activate, build_request

EDITION = "Windows Server 2019 Datacenter"


def start_host(db, *extra):
    proc = subprocess.Popen([sys.executable, "-m", "conformance.cli", "host", "--listen", "127.0.0.1:0", "--db", str(db),
                             *extra], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert "listening on" in line, line
    host, port = line.rsplit(" ", 1)[1].strip().rsplit(":", 1)
    return proc, host, int(port)


def host_status(db) -> dict:
    out = subprocess.run([sys.executable, "-m", "conformance.cli", "host-status", "--db", str(db), "--json"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def test_kill_9_during_load_keeps_every_answered_activation(tmp_path):
    db = tmp_path / "host.sqlite"
    proc, host, port = start_host(db)
    edition = catalog.load().edition(EDITION)
    answered: list[uuid.UUID] = []
    stop = threading.Event()

    def load():
        while not stop.is_set():
            cmid = uuid.uuid4()
            try:
                result = activate(host, port, build_request(edition, cmid=cmid, n_policy=25), timeout=2)
            except OSError:
                return  # the host died under us
            if result.verified:
                answered.append(cmid)

    workers = [threading.Thread(target=load) for _ in range(4)]
    for w in workers:
        w.start()
    deadline = time.monotonic() + 30
    while len(answered) < 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # mid-load, no chance to flush anything
    proc.wait(10)
    stop.set()
    for w in workers:
        w.join(10)
    assert len(answered) >= 30, "the load never got going"
    # N=25 gives a cache of 50: the count is every answered CMID, up to that cap
    expected = min(len(answered), 50)
    status = host_status(db)
    assert status["count"] >= expected, f"{len(answered)} answered, database counts {status['count']}"

    proc, host, port = start_host(db)
    try:
        again = activate(host, port, build_request(edition, cmid=answered[-1], n_policy=25), timeout=5)
        assert again.verified and again.response.response.count >= expected, again.problems
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
