"""`make bench`: reference host throughput, client-side cost, and the loopback ceiling, to reports/bench.json.

The host runs as its own process (`kmsconf host`), the load generator here sends
pre-sealed requests, so the host's figure is the host's cost. The same generator
against a trivial echo server gives the machine's loopback ceiling in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
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
from conformance.net.runner import read_pdu
from conformance.reference.client import build_request
from conformance.wire import framing, rpc
from conformance.wire.layout import IV

SECONDS = 2.0


PRODUCTS = {4: "Windows 7 Enterprise", 5: "Windows 8 Enterprise", 6: "Windows Server 2019 Datacenter"}


def _pdus(protocol: int) -> tuple[bytes, bytes]:
    """An NDR32-only bind and one request PDU for `protocol` (the request is re-sent verbatim)."""
    return loadgen.BIND, loadgen.request_pdu(PRODUCTS[protocol], uuid.uuid4())


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


def _echo_server() -> tuple[tuple[str, int], asyncio.AbstractEventLoop]:
    """A loopback server answering each PDU with the same bytes: the ceiling of this generator."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await reader.readexactly(16)
                body = await reader.readexactly(rpc.peek_frag_length(header) - 16)
                writer.write(header + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        holder["address"] = server.sockets[0].getsockname()[:2]
        ready.set()

    threading.Thread(target=lambda: (loop.run_until_complete(main()), loop.run_forever()), daemon=True).start()
    ready.wait(5)
    return holder["address"], loop


def client_cost_us(protocol: int, rounds: int = 300) -> float:
    """Microseconds per exchange on the client side: build + seal request, open + verify response."""
    from conformance.reference.config import HostConfig
    from conformance.reference.service import KmsService

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
def host_process(loop: str = "auto", pure_python: bool = False) -> Iterator[tuple[str, int]]:
    """`kmsconf host` in a process of its own, so the figures are the host's cost, not this generator's."""
    env = dict(os.environ, KMSCONF_PURE_PYTHON="1" if pure_python else "0")
    with tempfile.TemporaryDirectory() as scratch:
        host = loadgen.HostProcess.start(Path(scratch) / "host.log", ("--loop", loop), env=env)
        try:
            yield host.host, host.port
        finally:
            host.stop()


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


def vlmcs_rates(vlmcs: str, address: tuple[str, int], requests: int = 20000) -> dict:
    """vlmcs as the load generator (the issue's yardstick): V6 requests/s on one connection and per connection.

    vlmcs is a third-party binary the user built outside this project; nothing of it ships here.
    """
    rates = {}
    for name, extra, n in (("v6_one_connection_rps", [], requests), ("v6_new_connection_rps", ["-T"], requests // 5)):
        start = time.perf_counter()
        done = subprocess.run([vlmcs, f"{address[0]}:{address[1]}", "-6", "-l", PRODUCTS[6], "-n", str(n), *extra],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=600)
        if done.returncode:
            raise RuntimeError(f"vlmcs exited {done.returncode}: {done.stderr.strip()[-300:]}")
        rates[name] = n / (time.perf_counter() - start)
    return rates


def run(out: Path, seconds: float, vlmcs: str | None = None, vlmcsd: str | None = None) -> dict:
    from conformance.reference.host import new_event_loop
    from conformance.wire.rijndael import native_available

    loop = new_event_loop()
    loop_name = type(loop).__module__.split(".")[0]
    loop.close()
    results: dict = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                 "platform": platform.platform()}, "seconds_per_figure": seconds,
                     "host": {"event_loop": loop_name, "rijndael": "compiled" if native_available() else "python"},
                     "figures": {}}
    figures = results["figures"]
    echo_addr, echo_loop = _echo_server()
    try:
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
                row["one_connection_ratio_to_ceiling"] = row["one_connection_rps"] / ceiling_one
                row["new_connection_ratio_to_ceiling"] = row["new_connection_rps"] / ceiling_new
                figures[f"v{protocol}"] = row
            if vlmcs:
                results["vlmcs_load"] = {"reference host": vlmcs_rates(vlmcs, host_addr)}
    finally:
        echo_loop.call_soon_threadsafe(echo_loop.stop)
    if vlmcs and vlmcsd:
        results["vlmcs_load"]["vlmcsd"] = vlmcsd_rates(vlmcs, vlmcsd)
        from conformance.fuzz.throughput import versus_vlmcs

        results["fuzz_vs_vlmcs"] = versus_vlmcs(vlmcs, vlmcsd, seconds)
    results["without"] = variants(seconds)
    results["fuzz"] = fuzz_rate(seconds)
    results["suite"] = suite_wall_time()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return results


def vlmcsd_rates(vlmcs: str, vlmcsd: str) -> dict:
    """The same vlmcs load against vlmcsd on loopback, for the ratio the issue asks about."""
    port = free_port()
    proc = subprocess.Popen([vlmcsd, "-D", "-N1", "-B1", "-L", f"127.0.0.1:{port}"],
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
        return vlmcs_rates(vlmcs, ("127.0.0.1", port))
    finally:
        proc.terminate()
        proc.wait(10)


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
    args = parser.parse_args()
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
    for name, row in results.get("vlmcs_load", {}).items():
        print(f"vlmcs -> {name}: v6 {row['v6_one_connection_rps']:.0f}/s one connection, "
              f"{row['v6_new_connection_rps']:.0f}/s new connection")
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
