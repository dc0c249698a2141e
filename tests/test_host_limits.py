"""Limits that hold under attack: PDU size, connection count, slow and idle senders (real TCP host)."""

import socket
import contextlib
import struct
import threading
import time
import uuid

import pytest

from conformance import catalog, loadgen
from conformance.net.runner import NDR32_BIND, read_pdu
from conformance.reference.client.activation import activate
from conformance.wire.requests import build_request
from conformance.reference.host.config import HostConfig
from conformance.reference.host.server import HostThread
from conformance.wire import rpc


@pytest.fixture(params=["asyncio", "uvloop"])
def loop(request):
    """Every limit must hold on both event loops the host runs on."""
    if request.param == "uvloop":
        pytest.importorskip("uvloop", reason="uvloop is not installed")
    return request.param


def valid_activation(host, port):
    return activate(host, port, build_request(catalog.load().edition("Windows 7 Enterprise")), timeout=5).verified


def wait_until(condition, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the host did not get there in time"
        time.sleep(0.02)


def closed_within(sock, seconds):
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except (socket.timeout, ConnectionResetError):
        return False


def test_oversized_frag_length_is_refused_before_the_body_is_read(loop):
    with HostThread(HostConfig(port=0, max_pdu=5840), loop=loop) as thread:
        host, port = thread.host.address
        with socket.create_connection((host, port)) as sock:
            header = struct.pack("<BBBB4sHHI", 5, 0, 11, 3, b"\x10\0\0\0", 65000, 0, 2)
            sock.sendall(header)  # promises 65000 bytes and sends none: the host must not wait for them
            assert closed_within(sock, 2)
        assert thread.host.stats.malformed == 1
        assert valid_activation(host, port)


def bound_connection(host, port):
    """A connection whose bind the host accepted."""
    sock = socket.create_connection((host, port))
    sock.sendall(NDR32_BIND)
    read_pdu(sock)
    return sock


def test_a_connection_beyond_the_maximum_closes_the_least_recently_active_one(loop):
    with HostThread(HostConfig(port=0, max_connections=4), loop=loop) as thread:
        host, port = thread.host.address
        held = [socket.create_connection((host, port)) for _ in range(3)]
        busy = bound_connection(host, port)  # the last to arrive, and active since
        wait_until(lambda: thread.host.stats.active == 4)
        busy.sendall(NDR32_BIND)
        read_pdu(busy)
        assert valid_activation(host, port), "a real client must get a slot when idle connections hold them all"
        assert closed_within(held[0], 2), "the least recently active connection makes room"
        assert thread.host.stats.evicted >= 1 and thread.host.stats.refused == 0
        busy.sendall(NDR32_BIND)  # still open: it was active more recently than the idle ones
        assert rpc.decode_pdu(read_pdu(busy)).header.ptype == rpc.PType.BIND_ACK
        for sock in held + [busy]:
            sock.close()
        wait_until(lambda: thread.host.stats.active == 0)


def test_slow_sender_cannot_hold_a_slot(loop):
    with HostThread(HostConfig(port=0, read_timeout=0.5, idle_timeout=30), loop=loop) as thread:
        host, port = thread.host.address
        with socket.create_connection((host, port)) as sock:
            sock.sendall(b"\x05\x00")  # the start of a header, then nothing (slowloris)
            started = time.monotonic()
            assert closed_within(sock, 3)
            assert time.monotonic() - started < 2.5
        assert valid_activation(host, port)


def test_idle_connection_times_out(loop):
    with HostThread(HostConfig(port=0, idle_timeout=0.5), loop=loop) as thread:
        host, port = thread.host.address
        with bound_connection(host, port) as sock:
            assert closed_within(sock, 3)
        assert thread.host.stats.active == 0


def test_a_connection_that_never_binds_times_out_sooner_than_an_idle_one(loop):
    with HostThread(HostConfig(port=0, bind_timeout=0.5, idle_timeout=30), loop=loop) as thread:
        host, port = thread.host.address
        with socket.create_connection((host, port)) as unbound, bound_connection(host, port) as bound:
            started = time.monotonic()
            assert closed_within(unbound, 3)
            assert time.monotonic() - started < 2.5
            bound.sendall(NDR32_BIND)  # bound connections keep idle_timeout
            assert rpc.decode_pdu(read_pdu(bound)).header.ptype == rpc.PType.BIND_ACK


def test_client_that_never_reads_loses_its_slot(loop):
    """Pipelined requests from a client that reads no answer. Depending on where TCP stalls, the host
    either pauses reading it once its answers back up and drops it read_timeout later, or sees a PDU
    stop mid-way and drops it as a slow sender, or (the stall at a PDU boundary) as idle; either way the
    slot comes back and the host serves on."""
    request = loadgen.request_pdu("Windows 10/11 Enterprise", uuid.uuid4())
    with HostThread(HostConfig(port=0, read_timeout=1.0, idle_timeout=2.0), loop=loop) as thread:
        host, port = thread.host.address
        sock = socket.create_connection((host, port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(NDR32_BIND)

        def stuff():
            with contextlib.suppress(OSError):  # ends when the host drops the connection
                sock.sendall(request * 60_000)  # 17 MB, and never a read

        threading.Thread(target=stuff, daemon=True).start()
        deadline = time.monotonic() + 30
        held = lambda: thread.host.stats.connections == 0 or thread.host.stats.active  # not yet accepted, or open
        while thread.call(held) and time.monotonic() < deadline:
            time.sleep(0.2)
        stats = thread.host.stats
        sock.close()
        assert stats.active == 0, f"a client that reads nothing still holds its slot ({stats})"
        assert stats.requests > 0
        assert valid_activation(host, port)
