"""Limits that hold under attack: PDU size, connection count, slow and idle senders (real TCP host)."""

import socket
import struct
import time

from conformance import catalog
from conformance.reference.client import activate, build_request
from conformance.reference.config import HostConfig
from conformance.reference.host import HostThread


def valid_activation(host, port):
    return activate(host, port, build_request(catalog.load().edition("Windows 7 Enterprise")), timeout=5).verified


def closed_within(sock, seconds):
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except (socket.timeout, ConnectionResetError):
        return False


def test_oversized_frag_length_is_refused_before_the_body_is_read():
    with HostThread(HostConfig(port=0, max_pdu=5840)) as thread:
        host, port = thread.host.address
        with socket.create_connection((host, port)) as sock:
            header = struct.pack("<BBBB4sHHI", 5, 0, 11, 3, b"\x10\0\0\0", 65000, 0, 2)
            sock.sendall(header)  # promises 65000 bytes and sends none: the host must not wait for them
            assert closed_within(sock, 2)
        assert thread.host.stats.malformed == 1
        assert valid_activation(host, port)


def test_connections_beyond_the_maximum_are_closed_at_once_and_slots_come_back():
    with HostThread(HostConfig(port=0, max_connections=4)) as thread:
        host, port = thread.host.address
        held = [socket.create_connection((host, port)) for _ in range(4)]
        time.sleep(0.2)
        with socket.create_connection((host, port)) as extra:
            assert closed_within(extra, 2), "a fifth connection must be refused"
        assert thread.host.stats.refused >= 1
        for sock in held:
            sock.close()
        time.sleep(0.2)
        assert valid_activation(host, port)


def test_slow_sender_cannot_hold_a_slot():
    with HostThread(HostConfig(port=0, read_timeout=0.5, idle_timeout=30)) as thread:
        host, port = thread.host.address
        with socket.create_connection((host, port)) as sock:
            sock.sendall(b"\x05\x00")  # the start of a header, then nothing (slowloris)
            started = time.monotonic()
            assert closed_within(sock, 3)
            assert time.monotonic() - started < 2.5
        assert valid_activation(host, port)


def test_idle_connection_times_out():
    with HostThread(HostConfig(port=0, idle_timeout=0.5)) as thread:
        host, port = thread.host.address
        with socket.create_connection((host, port)) as sock:
            assert closed_within(sock, 3)
        assert thread.host.stats.active == 0
