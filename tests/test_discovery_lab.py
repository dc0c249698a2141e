"""The discovery lab's parts: the private namespace changes nothing outside it, the packet socket sees refused
connection attempts, named's query log is read, and everything is gone after the lab stops."""

import os
import socket
import subprocess
import sys
import time

import pytest

from conformance.dns.connect_log import ConnectLog, parse_syn
from conformance.dns.lab import find_named
from conformance.dns.namespace import Namespace, unavailable
from conformance.harness.discovery_lab import ANSWERS, REFUSES, SILENT, DiscoveryLab, HostSpec, Scenario

needs_namespace = pytest.mark.skipif(unavailable() is not None, reason=f"the namespace {unavailable()}")
needs_named = pytest.mark.skipif(find_named() is None, reason="BIND's named not installed (make setup installs bind9)")
RESOLV = "nameserver 127.0.0.1\nsearch lab.test\n"


@needs_namespace
def test_the_namespace_has_its_own_resolv_conf_and_network_and_leaves_the_machine_alone():
    before = open("/etc/resolv.conf").read()
    with Namespace(RESOLV) as ns:
        inside = subprocess.run(ns.command(["cat", "/etc/resolv.conf"]), capture_output=True, text=True).stdout
        links = subprocess.run(ns.command(["ip", "-o", "link"]), capture_output=True, text=True).stdout
        assert inside == RESOLV and open("/etc/resolv.conf").read() == before
        assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"], links
        assert subprocess.run(ns.command(["pwd"]), capture_output=True, text=True).stdout.strip() == os.getcwd()
        holder, workdir = ns.pid, ns.workdir
    assert open("/etc/resolv.conf").read() == before
    assert not os.path.exists(f"/proc/{holder}") and not workdir.exists()


@needs_namespace
def test_the_connect_log_sees_a_refused_attempt_and_nothing_else():
    with Namespace(RESOLV) as ns:
        log = ConnectLog(ns.run_inside(ConnectLog.packet_socket))
        try:
            closed = ns.socket()
            closed.bind(("127.0.1.9", 0))  # bound, never listening: refused
            address = closed.getsockname()
            client = ns.socket()
            with pytest.raises(ConnectionRefusedError):
                client.connect(address)
            log.settle()
            attempts = log.since(0)
            assert [a.destination for a in attempts] == [address] and attempts[0].source[0] == "127.0.0.1"
        finally:
            log.close()


def test_parse_syn_takes_a_syn_and_not_its_answer():
    def frame(flags: int) -> bytes:
        ip = bytes([0x45, 0, 0, 40, 0, 0, 0, 0, 64, socket.IPPROTO_TCP, 0, 0, 127, 0, 0, 1, 127, 0, 1, 2])
        tcp = (40000).to_bytes(2, "big") + (1688).to_bytes(2, "big") + bytes(9) + bytes([flags]) + bytes(6)
        return bytes(12) + b"\x08\x00" + ip + tcp
    assert parse_syn(frame(0x02)) == (("127.0.0.1", 40000), ("127.0.1.2", 1688))
    assert parse_syn(frame(0x12)) is None and parse_syn(frame(0x10)) is None


@needs_named
@pytest.mark.parametrize("namespace", [True, False], ids=["namespace", "loopback"])
def test_a_run_records_queries_contacts_and_activations_and_the_lab_goes_away(namespace):
    if namespace and unavailable():
        pytest.skip(reason=f"the namespace {unavailable()}")
    scenario = Scenario("demo", (HostSpec("down", REFUSES, 0, 60000), HostSpec("mute", SILENT, 0, 60000),
                                 HostSpec("up", ANSWERS, 5, 0)))
    command = (f"{sys.executable} -m conformance.cli activate --discover {{domain}} --dns-server {{dns}} "
               f"--product 'Windows 10/11 Enterprise' --timeout 1")
    lab = DiscoveryLab((scenario,), namespace=namespace).start()
    try:
        run = lab.run(scenario, command, timeout=30)
        named_pid = lab._named._proc.pid
    finally:
        lab.stop()
    assert run.asked_srv() and run.activated == ["up"] and run.process.returncode == 0, run
    tried = ["down", "mute", "up"] if namespace else ["mute", "up"]  # a refusal is seen only in the namespace
    assert sorted(run.lab_contacts[:-1]) == sorted(tried[:-1]) and run.lab_contacts[-1] == "up", run.contacts
    assert len(run.pdus) >= 2 and run.client_run().requests, run.pdus  # bind and request, on the host that answered
    assert not os.path.exists(f"/proc/{named_pid}")


KEEPER = """
import sys, time
from conformance.harness.discovery_lab import ANSWERS, DiscoveryLab, HostSpec, Scenario
lab = DiscoveryLab((Scenario("k", (HostSpec("a", ANSWERS),)),), namespace=True).start()
print(lab._named._proc.pid, lab._ns.pid, flush=True)
time.sleep(600)
"""


@needs_namespace
@needs_named
def test_a_killed_run_leaves_neither_named_nor_the_namespace_behind():
    keeper = subprocess.Popen([sys.executable, "-c", KEEPER], stdout=subprocess.PIPE, text=True)
    pids = [int(p) for p in keeper.stdout.readline().split()]
    assert len(pids) == 2 and all(os.path.exists(f"/proc/{pid}") for pid in pids)
    keeper.kill()  # as a SIGKILLed pytest would go: no teardown of its own
    keeper.wait()
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{pid}") for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(os.path.exists(f"/proc/{pid}") for pid in pids), pids
