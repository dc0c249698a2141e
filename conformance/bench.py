"""`make bench`: reference host throughput, client-side cost, and the loopback ceiling, to reports/bench.json.

The host runs as its own process (`kmsconf host`), the load generator here sends
pre-sealed requests, so the host's figure is the host's cost. The same generator
against a trivial echo server gives the machine's loopback ceiling in the same run.

With a user-built vlmcs (and vlmcsd), three loads are driven by vlmcs against the reference
host and vlmcsd, round by round in turn: one connection, a new connection per request, and
64 vlmcs processes at once; each figure is the median of the rounds and the ratio
reference/vlmcsd. The bench also records the host's memory per idle connection and how long a
client takes to activate while 10,000 idle connections are held open.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator

from conformance import catalog, loadgen
from conformance.dns.lab import free_port
from conformance.net.runner import NDR32_BIND, read_pdu
from conformance.wire.requests import build_request
from conformance.wire import framing, rpc
from conformance.wire.layout import IV

SECONDS = 2.0


PRODUCTS = {4: "Windows 7 Enterprise", 5: "Windows 8 Enterprise", 6: "Windows Server 2019 Datacenter"}


def _pdus(protocol: int) -> tuple[bytes, bytes]:
    """An NDR32-only bind and one request PDU for `protocol` (the request is re-sent verbatim)."""
    return NDR32_BIND, loadgen.request_pdu(PRODUCTS[protocol], uuid.uuid4())


def rate_one_connection(address: tuple[str, int], bind: bytes, req: bytes, seconds: float = SECONDS) -> float:
    with socket.create_connection(address) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(bind)
        read_pdu(sock)
        n, end = 0, time.perf_counter() + seconds
        start = time.perf_counter()
        while time.perf_counter() < end:
            sock.sendall(req)
            read_pdu(sock)
            n += 1
        return n / (time.perf_counter() - start)


def rate_new_connection(address: tuple[str, int], bind: bytes, req: bytes, seconds: float = SECONDS) -> float:
    n, end = 0, time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < end:
        with socket.create_connection(address) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(bind)
            read_pdu(sock)
            sock.sendall(req)
            read_pdu(sock)
        n += 1
    return n / (time.perf_counter() - start)


def rate_concurrent(address: tuple[str, int], bind: bytes, req: bytes, clients: int, seconds: float = SECONDS) -> float:
    counts = [0] * clients
    end = time.perf_counter() + seconds

    def worker(i: int) -> None:
        with socket.create_connection(address) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(bind)
            read_pdu(sock)
            while time.perf_counter() < end:
                sock.sendall(req)
                read_pdu(sock)
                counts[i] += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


class _Echo(asyncio.Protocol):
    """Each whole PDU straight back: the least a server can do per exchange."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while len(buffer) >= rpc.HEADER_SIZE:
            frag = rpc.peek_frag_length(buffer)
            if frag < rpc.HEADER_SIZE:
                self.transport.close()
                return
            if len(buffer) < frag:
                return
            self.transport.write(bytes(buffer[:frag]))
            del buffer[:frag]


def serve_echo() -> None:
    """`python -m conformance.bench --echo`: an echo server on a free loopback port (printed), until SIGTERM."""
    from conformance.net.loop import new_event_loop

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Echo, "127.0.0.1", 0)
        print(f"echo on {server.sockets[0].getsockname()[1]}", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main())


@contextlib.contextmanager
def echo_process() -> Iterator[tuple[str, int]]:
    """The echo server in a process of its own (same event loop as the host): the floor of this generator."""
    proc = subprocess.Popen([sys.executable, "-m", "conformance.bench", "--echo"], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if not line.startswith("echo on "):
            raise RuntimeError(f"the echo server did not start: {line!r}")
        yield "127.0.0.1", int(line.split()[-1])
    finally:
        proc.terminate()
        proc.wait(10)


def client_cost_us(protocol: int, rounds: int = 300) -> float:
    """Microseconds per exchange on the client side: build + seal request, open + verify response."""
    from conformance.reference.host.config import HostConfig
    from conformance.reference.host.service import KmsService

    service = KmsService(HostConfig())
    edition = catalog.load().edition(PRODUCTS[protocol])
    request = build_request(edition, workstation="bench.local")
    payload = framing.seal_request(request)
    response = service.handle(payload).payload
    start = time.perf_counter()
    for _ in range(rounds):
        framing.seal_request(request)
        framing.open_response(response, payload[IV])
    return (time.perf_counter() - start) / rounds * 1e6


@contextlib.contextmanager
def reference_process(*args: str, env: dict[str, str] | None = None) -> Iterator[loadgen.HostProcess]:
    """`kmsconf host` in a process of its own, so the figures are the host's cost, not this generator's."""
    with tempfile.TemporaryDirectory() as scratch:
        host = loadgen.HostProcess.start(Path(scratch) / "host.log", args, env=env, control=False)
        try:
            yield host
        finally:
            host.stop()


@contextlib.contextmanager
def host_process(loop: str = "auto", pure_python: bool = False) -> Iterator[tuple[str, int]]:
    """One worker: these figures are one process's cost per request."""
    env = dict(os.environ, KMSCONF_PURE_PYTHON="1" if pure_python else "0")
    with reference_process("--loop", loop, "--workers", "1", env=env) as host:
        yield host.host, host.port


# What each speed-up buys, V6 (the costliest version): the host with one of them taken away.
VARIANTS = {"asyncio event loop instead of uvloop": {"loop": "asyncio"},
            "pure-Python Rijndael rounds": {"pure_python": True}}


def variants(seconds: float) -> dict:
    bind, req = _pdus(6)
    rows = {}
    for name, options in VARIANTS.items():
        with host_process(**options) as address:
            rows[name] = {"v6_one_connection_rps": rate_one_connection(address, bind, req, seconds),
                          "v6_new_connection_rps": rate_new_connection(address, bind, req, seconds)}
    return rows


# --- vlmcs as the load generator (the yardstick), the reference host against vlmcsd ---
# vlmcs and vlmcsd are third-party binaries the user built outside this project; nothing of them ships here.
VLMCS_LOADS = ("one_connection", "new_connection", "concurrent_64")
CONCURRENT = 64
ROUNDS = 5


def vlmcs_rate(vlmcs: str, address: tuple[str, int], load: str, requests: int) -> float:
    """V6 requests per second of one vlmcs load; `requests` in all (64 processes share them)."""
    # the fuzz bench's wrapper: it also fails on the errors vlmcs writes while exiting 0
    from conformance.fuzz.throughput import vlmcs_rate as run_vlmcs

    if load == "concurrent_64":
        return run_vlmcs(vlmcs, address, max(1, requests // CONCURRENT), processes=CONCURRENT)
    return run_vlmcs(vlmcs, address, requests, *(["-T"] if load == "new_connection" else []))


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / os.sysconf("SC_CLK_TCK")


def vlmcs_loads(vlmcs: str, targets: dict[str, tuple[tuple[str, int], int | None]], seconds: float,
                rounds: int = ROUNDS) -> dict:
    """Each load, round after round, each target in turn (the machine's speed drifts: a ratio is taken from
    figures measured side by side). targets: name -> (address, pid whose process tree's CPU time to count)."""
    sizes = {"one_connection": int(2500 * seconds), "new_connection": int(500 * seconds),
             "concurrent_64": int(4000 * seconds)}
    rates: dict[str, dict[str, list[float]]] = {load: {name: [] for name in targets} for load in VLMCS_LOADS}
    cpu: dict[str, dict[str, list[float]]] = {load: {name: [] for name in targets} for load in VLMCS_LOADS}
    for _ in range(rounds):
        for load in VLMCS_LOADS:
            for name, (address, pid) in targets.items():
                pids = loadgen.proc_tree(pid) if pid else []
                before = _cpu_seconds(pids)
                rate = vlmcs_rate(vlmcs, address, load, sizes[load])
                rates[load][name].append(rate)
                if pids:  # host CPU per request: the processes' own accounting
                    cpu[load][name].append((_cpu_seconds(pids) - before) / (rate and sizes[load]) * 1e6)
    out: dict = {"rounds": rounds, "requests": sizes, "concurrent_clients": CONCURRENT}
    for load in VLMCS_LOADS:
        row: dict = {}
        for name in targets:
            row[f"{name}_rps"] = statistics.median(rates[load][name])
            if cpu[load][name]:
                row[f"{name}_cpu_us_per_request"] = statistics.median(cpu[load][name])
        if "vlmcsd" in targets:  # each round's ratio, then their median: pairs measured seconds apart
            for name in targets:
                if name != "vlmcsd":
                    row[f"{name}_ratio"] = statistics.median(
                        mine / theirs for mine, theirs in zip(rates[load][name], rates[load]["vlmcsd"]))
        out[load] = row
    return out


@contextlib.contextmanager
def vlmcsd_process(vlmcsd: str) -> Iterator[tuple[tuple[str, int], int]]:
    """vlmcsd on a free loopback port: (address, pid)."""
    port = free_port()
    proc = subprocess.Popen([vlmcsd, "-D", "-N1", "-B1", "-L", f"127.0.0.1:{port}"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{vlmcsd} did not listen on 127.0.0.1:{port}") from None
                time.sleep(0.05)
        yield ("127.0.0.1", port), proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


def floor(targets: dict[str, tuple[str, int]], echo: tuple[str, int], seconds: float, rounds: int = 7) -> dict:
    """The physical floor: this generator on one connection against an echo server, and each host's time per
    request above it (V6), from each round's own echo figure (short rounds in turn, medians)."""
    bind, req = _pdus(6)
    slice_seconds = max(0.1, seconds / 4)
    rates: dict[str, list[float]] = {name: [] for name in ["echo", *targets]}
    for _ in range(rounds):
        rates["echo"].append(rate_one_connection(echo, bind, req, slice_seconds))
        for name, address in targets.items():
            rates[name].append(rate_one_connection(address, bind, req, slice_seconds))
    out: dict = {"rounds": rounds, "echo_rps": statistics.median(rates["echo"])}
    for name in targets:
        out[f"{name}_rps"] = statistics.median(rates[name])
        out[f"{name}_us_above_floor"] = statistics.median(
            (1 / rps - 1 / echo_rps) * 1e6 for rps, echo_rps in zip(rates[name], rates["echo"]))
    return out


# --- idle connections: memory each, and whether real clients still get in ---
IDLE_HELD = 10_000
IDLE_SAMPLE = 2000  # fewer than one worker's max_connections: every one of them is held by the host


def _settle(pids_of, grown: int, timeout: float = 20.0) -> None:
    """Until the host holds `grown` more descriptors than it had (it accepted the connections), or stops changing."""
    deadline = time.monotonic() + timeout
    last, stable = -1, 0
    while time.monotonic() < deadline:
        now = sum(loadgen.proc_fds(pid) for pid in pids_of())
        if now >= grown:
            return
        stable = stable + 1 if now == last else 0
        if stable >= 10:
            return
        last = now
        time.sleep(0.05)


def idle_connections(vlmcsd: str | None, held: int = IDLE_HELD, sample: int = IDLE_SAMPLE) -> dict:
    """Memory per idle connection (PSS of every host process, over `sample` idle connections), and the
    seconds a client takes to activate while `held` idle connections stay open (median and worst of 3)."""
    from conformance.reference.client.activation import activate
    from conformance.wire.requests import build_request
    from conformance.net.loop import raise_fd_limit

    limit = raise_fd_limit(held + 1024)
    held = min(held, limit - 512)
    edition = catalog.load().edition(PRODUCTS[6])
    out: dict = {"held": held}
    with tempfile.TemporaryDirectory() as scratch:
        host = loadgen.HostProcess.start(Path(scratch) / "host.log", control=False)
        sockets: list[socket.socket] = []
        try:
            pids = lambda: loadgen.proc_tree(host.pid)
            fds, before = sum(loadgen.proc_fds(pid) for pid in pids()), host.pss_kib()
            sockets += loadgen.open_idle(host.host, host.port, sample)
            _settle(pids, fds + sample)
            out["reference_kib_per_idle_connection"] = (host.pss_kib() - before) / sample
            sockets += loadgen.open_idle(host.host, host.port, held - sample)
            _settle(pids, 10**9, timeout=5.0)  # until the host's descriptors stop changing
            times = []
            for _ in range(3):
                start = time.perf_counter()
                result = activate(host.host, host.port, build_request(edition), timeout=10)
                times.append(time.perf_counter() - start)
                if not result.verified:
                    raise RuntimeError(f"activation with {held} idle connections failed: {result.problems}")
            out["reference_seconds_to_activate"] = statistics.median(times)
            out["reference_seconds_to_activate_worst"] = max(times)
        finally:
            for sock in sockets:
                sock.close()
            host.stop()
    if vlmcsd:  # vlmcsd forks a process per connection: a smaller sample says enough
        with vlmcsd_process(vlmcsd) as (address, pid):
            count = sample // 4
            before = loadgen.proc_pss_kib(pid)
            sockets = loadgen.open_idle(*address, count)
            try:
                deadline = time.monotonic() + 20
                while len(loadgen.proc_tree(pid)) < count + 1 and time.monotonic() < deadline:
                    time.sleep(0.05)
                out["vlmcsd_kib_per_idle_connection"] = (loadgen.proc_pss_kib(pid) - before) / count
            finally:
                for sock in sockets:
                    sock.close()
    return out


def run(out: Path, seconds: float, vlmcs: str | None = None, vlmcsd: str | None = None) -> dict:
    from conformance.net.loop import new_event_loop
    from conformance.wire.rijndael import native_available

    loop = new_event_loop()
    loop_name = type(loop).__module__.split(".")[0]
    loop.close()
    results: dict = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                 "platform": platform.platform()}, "seconds_per_figure": seconds,
                     "host": {"event_loop": loop_name, "rijndael": "compiled" if native_available() else "python"},
                     "figures": {}}
    figures = results["figures"]
    with echo_process() as echo_addr:
        with host_process() as host_addr:
            for protocol in (4, 5, 6):
                bind, req = _pdus(protocol)
                ceiling_one = rate_one_connection(echo_addr, bind, req, seconds)
                ceiling_new = rate_new_connection(echo_addr, bind, req, seconds)
                row = {
                    "one_connection_rps": rate_one_connection(host_addr, bind, req, seconds),
                    "new_connection_rps": rate_new_connection(host_addr, bind, req, seconds),
                    "echo_one_connection_rps": ceiling_one,
                    "echo_new_connection_rps": ceiling_new,
                    "client_us_per_exchange": client_cost_us(protocol),
                }
                for clients in (1, 8, 64):
                    row[f"concurrent_{clients}_rps"] = rate_concurrent(host_addr, bind, req, clients, seconds)
                row["echo_concurrent_64_rps"] = rate_concurrent(echo_addr, bind, req, 64, seconds)
                row["one_connection_ratio_to_ceiling"] = row["one_connection_rps"] / ceiling_one
                row["new_connection_ratio_to_ceiling"] = row["new_connection_rps"] / ceiling_new
                figures[f"v{protocol}"] = row
        if vlmcs:
            results["vlmcs_load"] = compare_with_vlmcs(vlmcs, vlmcsd, echo_addr, seconds)
    if vlmcs and vlmcsd:
        from conformance.fuzz.throughput import versus_vlmcs

        results["fuzz_vs_vlmcs"] = versus_vlmcs(vlmcs, vlmcsd, seconds)
    results["without"] = variants(seconds)
    results["idle_connections"] = idle_connections(vlmcsd)
    results["fuzz"] = fuzz_rate(seconds)
    results["suite"] = suite_wall_time()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return results


def compare_with_vlmcs(vlmcs: str, vlmcsd: str | None, echo: tuple[str, int], seconds: float) -> dict:
    """The three vlmcs loads against the host as `kmsconf host` runs by default (a worker per CPU), the host with
    one worker, and vlmcsd; then the floor: this generator against the echo server and each host."""
    workers = len(os.sched_getaffinity(0))
    with contextlib.ExitStack() as stack:
        default = stack.enter_context(reference_process("--workers", str(workers)))
        single = stack.enter_context(reference_process("--workers", "1"))
        targets = {"reference": ((default.host, default.port), default.pid),
                   "reference_1_worker": ((single.host, single.port), single.pid)}
        if vlmcsd:  # no CPU figure: vlmcsd forks a process per connection, gone (and uncounted) when it closes
            targets["vlmcsd"] = (stack.enter_context(vlmcsd_process(vlmcsd))[0], None)
        loads = vlmcs_loads(vlmcs, targets, seconds)
        loads["reference_workers"] = workers
        if vlmcsd:
            loads["floor"] = floor({name: address for name, (address, _) in targets.items()}, echo, seconds)
    return loads


def fuzz_rate(seconds: float) -> dict:
    """Fuzz executions per second against the reference host, and where the time goes."""
    from conformance.fuzz.campaign import campaign
    from conformance.fuzz.mutators import Seed
    from conformance.net.runner import Runner

    seed = Seed.default()
    with host_process() as (host, port), tempfile.TemporaryDirectory() as findings:
        # a number of runs, not a budget: a budget could end before a slow start had run anything
        result = campaign(Runner(host, port, 3.0), lambda: seed.request, runs=max(int(seconds * 500), 300),
                          findings_dir=Path(findings), seed=seed)
    busy = result.harness_seconds + result.target_seconds
    return {"executions_per_second": result.rate, "runs": result.runs,
            "harness_share": result.harness_seconds / busy if busy else 0.0,
            "target_share": result.target_seconds / busy if busy else 0.0}


def suite_wall_time() -> dict:
    """Wall time of the default conformance suite against the embedded host."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pytest", str(Path(__file__).with_name("suite")), "-q",
                               "-p", "no:cacheprovider", "--summary", f"{scratch}/summary.json"],
                              capture_output=True, text=True)
        return {"seconds": time.perf_counter() - start, "exit_status": proc.returncode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="reports/bench.json")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="duration of each figure")
    parser.add_argument("--vlmcs", metavar="PATH", help="also load the host with this vlmcs binary (built by you)")
    parser.add_argument("--vlmcsd", metavar="PATH", help="with --vlmcs: measure this vlmcsd the same way")
    parser.add_argument("--echo", action="store_true", help=argparse.SUPPRESS)  # the floor's echo server
    args = parser.parse_args()
    if args.echo:
        serve_echo()
        return
    for path in filter(None, (args.vlmcs, args.vlmcsd)):
        if not os.access(path, os.X_OK):
            parser.error(f"{path}: not an executable file")
    if args.vlmcsd and not args.vlmcs:
        parser.error("--vlmcsd needs --vlmcs, the load generator")
    results = run(Path(args.out), args.seconds, args.vlmcs, args.vlmcsd)
    host = results["host"]
    print(f"host: {host['event_loop']} event loop, {host['rijndael']} Rijndael rounds")
    print(f"{'':4} {'1 conn/s':>10} {'new conn/s':>11} {'8 cl/s':>8} {'64 cl/s':>8} {'client us':>10} "
          f"{'% ceiling (1 conn / new)':>26}")
    for name, row in results["figures"].items():
        print(f"{name:4} {row['one_connection_rps']:10.0f} {row['new_connection_rps']:11.0f} "
              f"{row['concurrent_8_rps']:8.0f} {row['concurrent_64_rps']:8.0f} {row['client_us_per_exchange']:10.0f} "
              f"{100 * row['one_connection_ratio_to_ceiling']:12.1f} / {100 * row['new_connection_ratio_to_ceiling']:.1f}")
    for name, row in results["without"].items():
        print(f"without ({name}): v6 {row['v6_one_connection_rps']:.0f}/s one connection, "
              f"{row['v6_new_connection_rps']:.0f}/s new connection")
    vlmcs_load = results.get("vlmcs_load")
    if vlmcs_load:
        names = [key[:-4] for key in vlmcs_load["one_connection"] if key.endswith("_rps")]
        print(f"vlmcs, V6 (median of {vlmcs_load['rounds']} rounds; reference = {vlmcs_load['reference_workers']} "
              "workers):")
        for load in VLMCS_LOADS:
            row = vlmcs_load[load]
            cells = [f"{name} {row[name + '_rps']:.0f}/s" + (f" ({row[name + '_ratio']:.2f}x)"
                                                              if name + "_ratio" in row else "") for name in names]
            print(f"  {load:15} " + ", ".join(cells))
        if "floor" in vlmcs_load:
            fl = vlmcs_load["floor"]
            print(f"  floor (this generator, one connection): echo {fl['echo_rps']:.0f}/s; us per request above it: "
                  + ", ".join(f"{name} {fl[name + '_us_above_floor']:.0f}" for name in names))
    idle = results["idle_connections"]
    print(f"idle connections: {idle['reference_kib_per_idle_connection']:.1f} KiB each"
          + (f" (vlmcsd {idle['vlmcsd_kib_per_idle_connection']:.1f})" if "vlmcsd_kib_per_idle_connection" in idle
             else "")
          + f"; with {idle['held']} held open a client activates in {idle['reference_seconds_to_activate']:.3f} s")
    if "fuzz_vs_vlmcs" in results:
        f = results["fuzz_vs_vlmcs"]
        print(f"fuzz under the monitor vs vlmcs -T, one vlmcsd: vlmcs {f['vlmcs_new_connection_rps']:.0f}/s; fuzz "
              + ", ".join(f"{k} in flight {r['executions_per_second']:.0f}/s ({100 * r['share_of_vlmcs']:.0f}%)"
                          for k, r in f["connections"].items()))
    fuzz = results["fuzz"]
    print(f"fuzz: {fuzz['executions_per_second']:.0f} executions/s ({100 * fuzz['harness_share']:.0f}% harness, "
          f"{100 * fuzz['target_share']:.0f}% waiting for the host); default suite: {results['suite']['seconds']:.1f} s")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
