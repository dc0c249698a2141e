"""`kmsconf host --workers N`: N host processes on one port, sharing one client table.

Each worker is a whole ReferenceHost on an event loop of its own, in a process of its
own, accepting from its own socket bound to the same address with SO_REUSEPORT, so the
kernel spreads new connections over the workers and every core serves clients. They keep
one client table exactly (shared.py): in the database file (SharedStore), or with --db
:memory: in a ring of shared memory (RingStore) next to a throwaway file for the settings.
A worker that dies takes the host down with it (the supervisor stops the others and exits 1),
and workers stop when the supervisor goes, even by kill -9.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import replace
from typing import Callable

from .config import HostConfig
from .service import Clock, KmsService
from .shared import Ring, RingLapped, RingStore, SharedStore, lock_path
from .store import Store

READY_TIMEOUT = 60.0


def listening_sockets(config: HostConfig, count: int) -> list[socket.socket]:
    """`count` listening sockets on config.host:port (port 0: one free port for all) with SO_REUSEPORT."""
    family, kind, proto, _, address = socket.getaddrinfo(config.host, config.port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    # first without SO_REUSEPORT: a port held by anyone, even another host's workers, is an error, not shared
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
        address = probe.getsockname()
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            sock.listen(config.backlog)
            address = sock.getsockname()  # the port the first one got
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Supervisor:
    """Start the workers, report the address, stop them on request or when one of them dies."""

    def __init__(self, config: HostConfig, workers: int, loop: str = "auto"):
        if workers < 2:
            raise ValueError("a supervisor is for two workers or more")
        if config.control:
            raise ValueError("the test-control channel acts on one process's table: use it with --workers 1")
        self.config = replace(config)
        self.workers = workers
        self.loop = loop
        self._scratch: str | None = None
        self.ring: Ring | None = None  # with --db :memory:: the workers' records, in shared memory
        self.processes: list[multiprocessing.process.BaseProcess] = []
        self._alive_r = self._alive_w = -1
        self.address: tuple[str, int] | None = None
        self.publish_results: list[tuple[str, bool, str]] = []

    def start(self) -> tuple[str, int]:
        if self.config.db == ":memory:":  # settings (HwId, ePIDs) in a file that goes when the host stops
            shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None  # tmpfs: nothing of it need reach a disk
            self._scratch = tempfile.mkdtemp(prefix="kmsconf-host-", dir=shm)
            self.config.db = os.path.join(self._scratch, "host.sqlite")
            self.ring = Ring()
        try:
            # settings, HwId and ePIDs are made once, here, before any worker reads them
            store = Store(self.config.db) if self.ring is not None else SharedStore(self.config.db)
            service = KmsService(self.config, clock=Clock(), store=store)
            service.store.close()  # no SQLite connection may cross a fork
            sockets = listening_sockets(self.config, self.workers)
        except BaseException:
            self.stop()
            raise
        self.address = sockets[0].getsockname()[:2]
        self.config.port = self.address[1]  # the real port goes into bind_ack's secondary address
        context = multiprocessing.get_context("fork")
        ready_r, ready_w = os.pipe()
        self._alive_r, self._alive_w = os.pipe()  # workers see EOF on it when the supervisor is gone
        try:
            for index, sock in enumerate(sockets):
                others = [s for s in sockets if s is not sock]
                process = context.Process(target=_worker, name=f"kmsconf-host-worker-{index}", daemon=False,
                                          args=(index, self.config, self.ring, self._scratch, sock, others,
                                                self.loop, ready_w, self._alive_r, self._alive_w))
                process.start()
                self.processes.append(process)
        finally:
            for sock in sockets:
                sock.close()
            os.close(ready_w)
        try:
            self._wait_ready(ready_r)
        finally:
            os.close(ready_r)
        if self.config.dns_publish:
            from .server import dns_publisher

            self.publish_results = dns_publisher(self.config, self.address, service.log_record).publish()
        return self.address

    def _wait_ready(self, ready_r: int) -> None:
        """One byte from each worker once it serves; a worker that exits first fails the start."""
        os.set_blocking(ready_r, False)
        ready, deadline = 0, time.monotonic() + READY_TIMEOUT
        while ready < self.workers:
            if any(p.exitcode is not None for p in self.processes) or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("a host worker did not start (its error is above)")
            with contextlib.suppress(BlockingIOError):
                ready += len(os.read(ready_r, self.workers))
            time.sleep(0.01)

    def wait(self, stop_requested: Callable[[], bool]) -> int:
        """Until stop_requested() or a worker exits: 0 for a requested stop, 1 for a dead worker."""
        while not stop_requested():
            dead = [p for p in self.processes if p.exitcode is not None]
            if dead:
                print(f"kmsconf host: worker {dead[0].name} exited ({dead[0].exitcode}); stopping the others",
                      flush=True)
                self.stop()
                return 1
            time.sleep(0.1)
        return 0

    def stop(self, timeout: float = 15.0) -> None:
        for process in self.processes:
            if process.exitcode is None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:
                process.kill()
                process.join(5)
        if self.config.dns_publish and self.config.dns_unpublish_on_exit and self.address:
            from .server import dns_publisher

            dns_publisher(self.config, self.address, lambda record: None).unpublish()
        for fd in (self._alive_r, self._alive_w):
            if fd >= 0:
                os.close(fd)
        self._alive_r = self._alive_w = -1
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
        elif os.path.exists(lock_path(self.config.db)):
            os.unlink(lock_path(self.config.db))


KEEP_UP_SECONDS = 0.25  # how often an idle worker replays the others' records (RingStore)


def _worker(index: int, config: HostConfig, ring: Ring | None, scratch: str | None, sock: socket.socket,
            others: list[socket.socket], loop: str, ready_w: int, alive_r: int, alive_w: int) -> None:
    from conformance.net.loop import new_event_loop

    from .server import ReferenceHost

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)  # not the supervisor's handlers: stopped while starting, it just goes
    for other in others:
        other.close()  # only the worker that accepts from a socket may hold it, or a dead worker's share hangs
    os.close(alive_w)
    config = replace(config, dns_publish=False)  # the supervisor publishes, once
    lapped: list[bool] = []
    gone: list[bool] = []  # the supervisor died (kill -9): nobody else will remove the throwaway database

    async def serve() -> None:
        running = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            running.add_signal_handler(sig, stop.set)
        def orphaned() -> None:  # readable = EOF: the supervisor is gone
            gone.append(True)
            stop.set()

        running.add_reader(alive_r, orphaned)

        def failed(loop: asyncio.AbstractEventLoop, context: dict) -> None:
            loop.default_exception_handler(context)
            if isinstance(context.get("exception"), RingLapped):
                lapped.append(True)
                stop.set()  # it can no longer count right: it goes, and with it the host

        running.set_exception_handler(failed)
        store = SharedStore(config.db) if ring is None else RingStore(config.db, ring)
        host = ReferenceHost(config, KmsService(config, clock=Clock(), store=store))
        host.service.log_fields["worker"] = index
        if isinstance(store, RingStore):
            def keep_up() -> None:
                store.keep_up(host.service.table)
                running.call_later(KEEP_UP_SECONDS, keep_up)

            running.call_later(KEEP_UP_SECONDS, keep_up)
        await host.start(sock)
        os.write(ready_w, b"r")
        os.close(ready_w)
        await stop.wait()
        running.remove_reader(alive_r)
        await host.stop()
        host.service.store.close()

    with asyncio.Runner(loop_factory=lambda: new_event_loop(loop)) as runner:
        runner.run(serve())
    if gone and scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)  # each worker tries; unlinked files stay valid while open
    if lapped:
        raise SystemExit(1)
