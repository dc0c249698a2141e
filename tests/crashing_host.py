"""A KMS host with four planted bugs, for the process monitor's tests (run as a subprocess).

    python tests/crashing_host.py PORT [--fork] [--bugs segv,asan,hang,stall]

- a request whose opnum has its top bit set (byte 23 >= 0x80): a real SIGSEGV, reading address 0 (Python's
  faulthandler writes its report);
- a request whose KMS payload, once decrypted, has a vm field with its top bit set: an AddressSanitizer report
  on stderr, as libasan writes it, then abort() (only a fuzzer that seals requests gets there);
- a bind whose assoc_group has its top bit set (byte 23 >= 0x80): its thread takes the lock every PDU waits for
  and never gives it back, so the host answers nobody again (a hang);
- a bind whose max_recv has its top bit set (byte 19 >= 0x80): no answer, ever, on that connection, while the
  host serves the others (a timeout).

Three more, only when named in --bugs: `empty`, abort() when a connection closes without a byte (what a port
scan, or a reachability probe, does); `auth3`, abort() on a PDU of type 16 (auth3, which no KMS client sends);
`degrade-v4`, no crash: after the first PDU of a type no KMS client sends, every V4 request is dropped with a
close (a host that malformed input leaves serving only in part).

Everything else is the reference host's RpcSession and KmsService, a thread per connection (as py-kms): a
crash takes the whole process, a hang one thread. With --fork a child serves each connection, as vlmcsd
does: a crash or a hang takes the child, the parent goes on accepting.
"""

from __future__ import annotations

import ctypes
import faulthandler
import os
import signal
import socket
import sys
import threading
import time

from conformance.net.runner import read_pdu
from conformance.reference.host.config import HostConfig
from conformance.reference.host.rpc_session import RpcSession
from conformance.reference.host.service import KmsService
from conformance.wire import framing, ndr, rpc
from conformance.wire.errors import DecodeError

ASAN_REPORT = """=================================================================
==%(pid)d==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x602000000018 at pc 0x55d5c1a0c2a3 bp 0x7ffcde5010f0 sp 0x7ffcde5008a0
READ of size 4 at 0x602000000018 thread T0
    #0 0x55d5c1a0c2a3 in check_vm /src/crashing_host.c:42
    #1 0x55d5c1a0c5e7 in handle_request /src/crashing_host.c:97
    #2 0x55d5c1a0c6aa in serve_connection /src/crashing_host.c:130
    #3 0x7f7a8b445249 in __libc_start_call_main ../sysdeps/nptl/libc_start_call_main.h:58

0x602000000018 is located 0 bytes to the right of 8-byte region [0x602000000010,0x602000000018)
SUMMARY: AddressSanitizer: heap-buffer-overflow /src/crashing_host.c:42 in check_vm
==%(pid)d==ABORTING
"""


def vm_of(pdu: bytes) -> int | None:
    try:
        return framing.open_request(ndr.decode_request_stub(rpc.decode_pdu(pdu).stub), allow_minor=True).request.vm
    except (DecodeError, AttributeError):
        return None


BUGS = {"segv", "asan", "hang", "stall"}  # those planted by default (--bugs names the ones to plant)
OPT_IN = {"empty", "auth3", "degrade-v4"}
DEGRADED = threading.Event()  # degrade-v4: a malformed PDU was seen


def planted(pdu: bytes) -> None:
    top_bit = len(pdu) > 23 and pdu[23] & 0x80
    if "segv" in BUGS and pdu[2] == rpc.PType.REQUEST and top_bit:
        ctypes.string_at(0)
    if "asan" in BUGS and pdu[2] == rpc.PType.REQUEST and (vm_of(pdu) or 0) & 0x80000000:
        sys.stderr.write(ASAN_REPORT % {"pid": os.getpid()})
        sys.stderr.flush()
        faulthandler.disable()  # a sanitized C program writes one report, not two
        os.abort()
    if "auth3" in BUGS and pdu[2] == 16:
        os.abort()
    if "hang" in BUGS and pdu[2] == rpc.PType.BIND and top_bit:
        with SERVICE:
            forever()
    if "stall" in BUGS and pdu[2] == rpc.PType.BIND and len(pdu) > 19 and pdu[19] & 0x80:
        forever()


def forever() -> None:
    while True:
        time.sleep(3600)


def degraded(pdu: bytes) -> bool:
    """degrade-v4: note a PDU of a type no KMS client sends; once one was seen, True for a V4 request."""
    if pdu[2] not in (rpc.PType.BIND, rpc.PType.ALTER_CONTEXT, rpc.PType.REQUEST):
        DEGRADED.set()
    if not DEGRADED.is_set() or pdu[2] != rpc.PType.REQUEST:
        return False
    for ndr64 in (False, True):  # whichever transfer syntax the stub decodes under
        try:
            payload = ndr.decode_request_stub(rpc.decode_pdu(pdu).stub, ndr64)
        except (DecodeError, AttributeError):
            continue
        return payload[2:4] == b"\x04\x00"  # the clear version: minor, then major 4
    return False


SERVICE = threading.Lock()  # one KmsService (one SQLite connection) for all the threads


def serve(conn: socket.socket, session: RpcSession) -> None:
    with conn:
        if "empty" in BUGS:
            try:
                first = conn.recv(1, socket.MSG_PEEK)
            except OSError:
                first = b"?"  # reset: not the empty close this bug is about
            if not first:
                os.abort()
        while True:
            try:
                pdu = read_pdu(conn)
            except OSError:  # closed, reset, or a frag_length no PDU has
                return
            planted(pdu)
            if "degrade-v4" in BUGS and degraded(pdu):
                return
            with SERVICE:
                reply = session.handle(pdu)
            if reply.data:
                conn.sendall(reply.data)
            if reply.close:
                return


def main() -> None:
    port, fork = int(sys.argv[1]), "--fork" in sys.argv[2:]
    if "--bugs" in sys.argv:
        named = set(sys.argv[sys.argv.index("--bugs") + 1].split(","))
        BUGS.intersection_update(named)
        BUGS.update(named & OPT_IN)
    faulthandler.enable()
    config = HostConfig(port=port)
    service = KmsService(config)
    listener = socket.create_server(("127.0.0.1", port))
    if fork:
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children reap themselves, as vlmcsd's do
    print(f"crashing host listening on 127.0.0.1:{port}{' (a child per connection)' if fork else ''}", flush=True)
    while True:
        conn, _ = listener.accept()
        if not fork:
            threading.Thread(target=serve, args=(conn, RpcSession(service, config)), daemon=True).start()
        elif os.fork() == 0:
            listener.close()
            serve(conn, RpcSession(service, config))
            os._exit(0)
        else:
            conn.close()


if __name__ == "__main__":
    main()
