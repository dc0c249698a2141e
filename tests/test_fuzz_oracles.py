"""The fuzzer's findings are bugs: it refuses a port where no DCE/RPC answers, a silence is a finding only where an
answer was owed (or a fresh connection gets none either), and campaigns against the reference host find nothing."""

import os
import struct
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conformance.fuzz.campaign import replay_finding
from conformance.fuzz.classes import owes_answer
from conformance.fuzz.mutators import Seed
from conformance.fuzz.program import Program, Step, run_program
from conformance.net.runner import Runner
from conformance.reference.host.config import HostConfig
from conformance.reference.host.server import HostThread

ROOT = Path(__file__).resolve().parents[1]


def kmsconf(*args, timeout=120, **kwargs):
    return subprocess.run([sys.executable, "-m", "conformance.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def cut_request(seed: Seed, frag_length: int, next_frag_length: int) -> bytes:
    """The seed's request with frag_length cut short, the bytes past it a PDU header announcing next_frag_length."""
    request = bytearray(seed.standard()[1])
    request[8:10] = struct.pack("<H", frag_length)
    request[frag_length + 8:frag_length + 10] = struct.pack("<H", next_frag_length)
    return bytes(request)


def test_an_answer_is_owed_only_for_a_whole_bind_alter_context_or_request():
    seed = Seed.default()
    bind, request = seed.standard()
    assert owes_answer(bind) and owes_answer(bind + request)
    assert not owes_answer(bind[:40]), "a PDU cut short: the host waits for the rest"
    assert not owes_answer(cut_request(seed, 160, 4000)), "its second PDU announces more bytes than came"
    unknown = bytearray(bind)
    unknown[2] = 0x30
    assert not owes_answer(bytes(unknown)), "a type a host may ignore (KMS-ROB-003)"
    fragment = bytearray(request)
    fragment[3] &= ~0x02
    assert not owes_answer(bind + bytes(fragment)), "a first fragment: more are to come"


def test_the_reference_host_s_timeout_finding_is_a_host_waiting_for_the_bytes_it_was_promised():
    """The input of the finding: a request before any bind, its frag_length cut from 292 to 160, then two binds.
    The host answers the 160 bytes with a fault, reads the rest as the header of a PDU of 4000 bytes and waits for
    them (C706: frag_length alone frames PDUs), while it serves every other connection: no finding."""
    seed = Seed.default()
    bind = seed.standard()[0]
    program = Program((Step(0, cut_request(seed, 160, 4000), seed.standard()[1]), Step(0, bind, bind),
                       Step(0, bind, bind)), "the finding")
    with HostThread(HostConfig(port=0)) as thread:
        host, port = thread.host.address
        import asyncio

        run = asyncio.run(run_program(program, host, port, 1.0))
        assert run.outcome == "waiting" and run.transcript[1][1][2] == 3, (run.outcome, run.detail)  # a fault, then
        assert replay_finding(program, Runner(host, port, 1.0)) == [], "replayed, it does nothing wrong"


def test_fuzz_on_a_port_where_no_dce_rpc_answers_is_one_line_and_exit_3():
    server = ThreadingHTTPServer(("127.0.0.1", 0), SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        proc = kmsconf("fuzz", "--target", f"127.0.0.1:{server.server_address[1]}", "--budget", "30", "--timeout", "1")
    finally:
        server.shutdown()
    assert proc.returncode == 3 and proc.stdout == "", (proc.returncode, proc.stdout[-500:])
    assert len(proc.stderr.strip().splitlines()) == 1 and "a DCE/RPC bind got" in proc.stderr, proc.stderr


def reference_host(*args: str) -> tuple[subprocess.Popen, str]:
    """`kmsconf host` as a user starts it, and the address it prints."""
    proc = subprocess.Popen([sys.executable, "-m", "conformance.cli", "host", "--listen", "127.0.0.1:0", "--workers",
                             "1", *args], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert "listening on" in line, line
    return proc, line.split()[-1]


def test_twenty_seconds_against_the_reference_host_find_nothing_and_say_how_far_they_are(tmp_path):
    """The default run's campaign; the ten-minute one below is make fuzz-long's."""
    host, address = reference_host()
    try:
        proc = kmsconf("fuzz", "--target", address, "--budget", "20", "--findings", str(tmp_path), timeout=300)
    finally:
        host.terminate()
        host.wait(10)
    progress = [line for line in proc.stderr.splitlines() if line.startswith("fuzz: ")]
    assert proc.returncode == 0 and "FINDING" not in proc.stdout, proc.stdout[-3000:]
    assert len(progress) >= 3, "a line every five seconds, though stderr is no terminal: " + proc.stderr[-1000:]
    assert not list(tmp_path.iterdir())


@pytest.mark.fuzz
def test_ten_minutes_against_the_watched_reference_host_find_nothing(tmp_path):
    """The long campaign (make fuzz-long): the reference host started and watched by the monitor, four inputs in
    flight, stateful sequences among them."""
    budget = os.environ.get("KMSCONF_FUZZ_BUDGET", "600")
    target = f"{sys.executable} -m conformance.cli host --workers 1 --listen 127.0.0.1:{{port}}"
    proc = kmsconf("fuzz", "--target-cmd", target, "--budget", budget, "--connections", "4", "--findings",
                   str(tmp_path), timeout=float(budget) + 600)
    assert proc.returncode == 0 and "FINDING" not in proc.stdout, proc.stdout[-3000:]
