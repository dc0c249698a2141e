"""An asyncio load generator: many concurrent KMS activations with pre-sealed requests (bench and load tests).

`HostProcess` and `SharedHost` run one reference host in its own process for load generators
in several processes (the sharded soak test under pytest-xdist).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from conformance import catalog
from conformance.net.runner import NDR32_BIND
from conformance.wire.requests import build_request
from conformance.wire import framing, ndr, rpc



def request_pdu(product: str, cmid: uuid.UUID, n_policy: int | None = None) -> bytes:
    fields = {} if n_policy is None else {"n_policy": n_policy}
    request = build_request(catalog.load().edition(product), cmid=cmid, workstation="load.test", **fields)
    stub = ndr.encode_request_stub(framing.seal_request(request))
    return rpc.Request(stub, rpc.Header(rpc.PType.REQUEST, rpc.FIRST_LAST, 2)).encode()


async def _read_pdu(reader: asyncio.StreamReader) -> bytes:
    header = await reader.readexactly(rpc.HEADER_SIZE)
    return header + await reader.readexactly(rpc.peek_frag_length(header) - rpc.HEADER_SIZE)


@dataclass
class LoadResult:
    answered: int = 0
    failed: int = 0
    counts: list[int] = field(default_factory=list)  # the count of every answer, in the order they came


async def _one_connection(host: str, port: int, requests: list[bytes], result: LoadResult, timeout: float) -> None:
    done = 0  # requests settled (answered or refused) on this connection
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError):
        result.failed += len(requests)
        return
    try:
        writer.write(NDR32_BIND)
        await asyncio.wait_for(_read_pdu(reader), timeout)
        for pdu in requests:
            writer.write(pdu)
            reply = rpc.decode_pdu(await asyncio.wait_for(_read_pdu(reader), timeout))
            body, code = ndr.decode_response_stub(reply.stub)
            if body is None:
                result.failed += 1
            else:
                result.answered += 1
                result.counts.append(framing.open_response(body).response.count)
            done += 1
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
        result.failed += len(requests) - done  # a hung or closed host fails what it never answered
    finally:
        writer.close()


async def run(host: str, port: int, batches: list[list[bytes]], concurrency: int, timeout: float = 30.0) -> LoadResult:
    """Each batch goes over one connection; at most `concurrency` connections at once. A read waits at
    most `timeout` seconds, so a hung host fails the load instead of hanging it."""
    result = LoadResult()
    gate = asyncio.Semaphore(concurrency)

    async def guarded(batch: list[bytes]) -> None:
        async with gate:
            await _one_connection(host, port, batch, result, timeout)

    await asyncio.gather(*(guarded(b) for b in batches))
    return result


# --- one host process, several load-generator processes (pytest-xdist workers) ---
def proc_fds(pid: int) -> int:
    """Open file descriptors of a process (Linux /proc)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def proc_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))


def proc_tree(pid: int) -> list[int]:
    """The process and its descendants (a host's supervisor and workers)."""
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            for child in children.read().split():
                pids.extend(proc_tree(int(child)))
    except OSError:
        pass
    return pids


def proc_pss_kib(pid: int) -> int:
    """Proportional set size of a process and its descendants: shared pages counted once over all of them."""
    total = 0
    for each in proc_tree(pid):
        with contextlib.suppress(OSError), open(f"/proc/{each}/smaps_rollup") as rollup:
            total += next(int(line.split()[1]) for line in rollup if line.startswith("Pss:"))
    return total


def open_idle(host: str, port: int, count: int, timeout: float = 10.0) -> list[socket.socket]:
    """`count` connections that never send a byte (someone holding slots); the caller closes them."""
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            held.append(socket.create_connection((host, port), timeout=timeout))
    except BaseException:
        for sock in held:
            sock.close()
        raise
    return held


def proc_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (a stopped host whose parent has not reaped it yet)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(line.split()[1] for line in status if line.startswith("State:")) != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@dataclass
class HostProcess:
    """A reference host in its own process (`kmsconf host`, with --control unless told not to), on a free
    loopback port. Without --control it runs as many workers as `args` say (default: one per CPU)."""

    pid: int
    port: int
    control_port: int  # 0 without --control
    log: str
    host: str = "127.0.0.1"

    @classmethod
    def start(cls, log: Path, args: tuple[str, ...] = (), timeout: float = 30.0,
              env: dict[str, str] | None = None, control: bool = True) -> "HostProcess":
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "conformance.cli", "host", "--listen", "127.0.0.1:0",
                                     *(["--control"] if control else []), *args], stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = Path(log).read_text(errors="replace")
            listening = re.search(r"listening on 127\.0\.0\.1:(\d+)", text)
            control_at = re.search(r"test control on 127\.0\.0\.1:(\d+)", text)
            if listening and (control_at or not control):
                return cls(proc.pid, int(listening[1]), int(control_at[1]) if control_at else 0, str(log))
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        proc.kill()
        raise RuntimeError(f"the reference host did not start (exit {proc.poll()}):\n{Path(log).read_text()[-2000:]}")

    def status(self) -> dict:
        from conformance.net.control import ControlChannel

        return ControlChannel.tcp(self.host, self.control_port).status()

    def fds(self) -> int:
        return proc_fds(self.pid)

    def rss_kib(self) -> int:
        return proc_rss_kib(self.pid)

    def pss_kib(self) -> int:
        """Memory of the host's every process (supervisor and workers)."""
        return proc_pss_kib(self.pid)

    def settled_fds(self, at_most: int | None = None, timeout: float = 10.0) -> int:
        """The fd count once the host has closed what its clients closed: stable, or down to `at_most`."""
        deadline = time.monotonic() + timeout
        last = self.fds()
        while time.monotonic() < deadline:
            time.sleep(0.2)
            now = self.fds()
            if (at_most is not None and now <= at_most) or (at_most is None and now == last):
                return now
            last = now
        return last

    def stop(self, timeout: float = 15.0) -> bool:
        """SIGTERM and wait; True when the host shut down cleanly (it says so in its log)."""
        if proc_alive(self.pid):
            os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while proc_alive(self.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc_alive(self.pid):
            os.kill(self.pid, signal.SIGKILL)
            return False
        return "kmsconf host stopped" in Path(self.log).read_text(errors="replace")


class SharedHost:
    """One host process shared by `shards` load generators in several processes, coordinated through a
    JSON state file under a file lock (the pytest-xdist pattern for session-wide resources).

    The first shard to `join` starts the host (`start` returns the state: the host and whatever the
    shards need, e.g. a baseline); every shard calls `finish` when its load is done, and the last of
    them runs `final` (the model check) and stops the host."""

    def __init__(self, directory: Path, shards: int):
        from filelock import FileLock

        self.path = Path(directory) / "soak-host.json"
        self.lock = FileLock(str(Path(directory) / "soak-host.lock"))
        self.shards = shards

    def _read(self) -> dict | None:
        return json.loads(self.path.read_text()) if self.path.exists() else None

    def _write(self, state: dict) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.path)

    def join(self, start) -> dict:
        with self.lock:
            state = self._read()
            if state is None:
                try:
                    state = {"status": "running", "shards": self.shards, "done": [], "answered": 0, "failed": 0,
                             "started": time.time(), **start()}
                except Exception as exc:
                    self._write({"status": "failed", "error": f"{type(exc).__name__}: {exc}"})
                    raise
                self._write(state)
            if state["status"] != "running":
                raise RuntimeError(f"the shared host is {state['status']}: {state.get('error', state)}")
            if state["shards"] != self.shards:
                raise RuntimeError(f"shards disagree on their number: {state['shards']} and {self.shards}")
            return state

    def finish(self, shard: int, answered: int, failed: int, final) -> dict | None:
        """Record a shard's figures; the last shard gets the state after `final(state)` and the host's stop."""
        with self.lock:
            state = self._read()
            state["done"].append(shard)
            state["answered"] += answered
            state["failed"] += failed
            if len(state["done"]) < state["shards"]:
                self._write(state)
                return None
            state["ended"] = time.time()
            try:
                state.update(final(state))
            finally:
                state["stopped_cleanly"] = HostProcess(**state["host"]).stop()
                state["status"] = "stopped"
                self._write(state)
            return state

    def stop_abandoned(self) -> dict | None:
        """Stop a host whose shards did not all finish (deselected, -x, a crash); the state says so."""
        with self.lock:
            state = self._read()
            if state is None or state["status"] != "running":
                return state
            state["stopped_cleanly"] = HostProcess(**state["host"]).stop()
            state["status"] = "abandoned"
            self._write(state)
            return state
