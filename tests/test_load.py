"""The reference host under load: counts match the model, nothing leaks (file descriptors, memory).

The soak test runs its load generators as shards (one per xdist worker under `-n auto`, else
one) against ONE reference host in a process of its own, so the host has a core to itself
and the generators scale with the others. The first shard starts the host, warms it up and
takes the baseline; the last one to finish checks the model and stops it (loadgen.SharedHost).
"""

import asyncio
import dataclasses
import math
import os
import random
import socket
import uuid

import pytest

from conformance import loadgen
from conformance.reference.host.config import HostConfig
from conformance.reference.host.server import HostThread

PRODUCT = "Windows 10/11 Enterprise"  # V6, N = 25: the cache holds 50
PER_CONNECTION = 100  # requests over each connection
WARM_UP_SHARE = 20  # the warm-up sends 1/20 of the connections first (50 of the 1000)
CONCURRENCY = 64  # connections at once, over all shards
RSS_GROWTH_KIB = 50 * 1024


def open_fds() -> int:
    return loadgen.proc_fds(os.getpid())


def test_thousand_concurrent_connections_each_activating():
    cmids = [uuid.uuid4() for _ in range(1000)]
    pdus = [[loadgen.request_pdu(PRODUCT, c)] for c in cmids]
    with HostThread(HostConfig(port=0)):
        pass  # uvloop opens one pipe per process on first use: in the baseline, not a leak
    baseline = open_fds()
    with HostThread(HostConfig(port=0, max_connections=2048, backlog=2048)) as thread:
        host, port = thread.host.address
        result = asyncio.run(loadgen.run(host, port, pdus, concurrency=1000))
        status = thread.call(thread.host.service.status)
        stats = thread.host.stats
    assert (result.answered, result.failed) == (1000, 0)
    assert (status["count"], status["cache_size"]) == (50, 50), "1000 distinct CMIDs saturate the 2 x 25 cache"
    assert stats.active == 0 and stats.connections == 1000
    assert open_fds() <= baseline, "file descriptors leaked"


def soak_cmids(seed: int, count: int) -> list[uuid.UUID]:
    """The soak's CMIDs, the same in every shard's process."""
    rng = random.Random(seed)
    return [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(count)]


def connection_pdus(cmids: list[uuid.UUID], connection: int) -> list[bytes]:
    """Connection i sends PER_CONNECTION requests; over all connections each CMID repeats (renewals)."""
    n = len(cmids)
    return [loadgen.request_pdu(PRODUCT, cmids[(connection * PER_CONNECTION + j) % n]) for j in range(PER_CONNECTION)]


def start_host(directory, cmid_count: int, connections: int) -> dict:
    """Start the host, warm it up to steady-state memory, and take the baseline (under the shared lock)."""
    host = loadgen.HostProcess.start(directory / "soak-host.log")
    seed = random.getrandbits(64)
    cmids = soak_cmids(seed, cmid_count)
    warm_up = [connection_pdus(cmids, i) for i in range(max(1, connections // WARM_UP_SHARE))]
    warm = asyncio.run(loadgen.run(host.host, host.port, warm_up, concurrency=CONCURRENCY))
    if warm.failed:
        host.stop()
        raise RuntimeError(f"warm-up: {warm.failed} of {len(warm_up) * PER_CONNECTION} requests failed")
    return {"host": dataclasses.asdict(host), "seed": seed,
            "baseline": {"fds": host.settled_fds(), "rss_kib": host.rss_kib()}}


def measure(state: dict) -> dict:
    """The host after every shard's load: model figures, fds once connections are closed, RSS."""
    host = loadgen.HostProcess(**state["host"])
    status = host.status()
    return {"final": {"count": status["count"], "cache_size": status["cache_size"],
                      "fds": host.settled_fds(at_most=state["baseline"]["fds"]), "rss_kib": host.rss_kib()}}


@pytest.mark.slow
def test_sustained_activations_from_many_cmids(soak_shard, soak_dir, pytestconfig):
    """100,000 activations from 10,000 CMIDs (--soak-requests, --soak-cmids), this shard's part of them."""
    requests, cmid_count = pytestconfig.getoption("--soak-requests"), pytestconfig.getoption("--soak-cmids")
    if requests % PER_CONNECTION or cmid_count < 50:
        raise pytest.UsageError(f"--soak-requests must be a multiple of {PER_CONNECTION} and --soak-cmids >= 50")
    index, count = soak_shard
    shared = loadgen.SharedHost(soak_dir, count)
    connections = requests // PER_CONNECTION
    state = shared.join(lambda: start_host(soak_dir, cmid_count, connections))
    mine = range(index, connections, count)
    answered = failed = 0
    try:
        cmids = soak_cmids(state["seed"], cmid_count)
        host = state["host"]
        result = asyncio.run(loadgen.run(host["host"], host["port"], [connection_pdus(cmids, i) for i in mine],
                                         concurrency=math.ceil(CONCURRENCY / count)))
        answered, failed = result.answered, result.failed
    finally:
        final = shared.finish(index, answered, failed, measure)  # the last shard measures and stops the host
    assert (answered, failed) == (len(mine) * PER_CONNECTION, 0)
    if final is None:
        return  # the model is checked once, by the shard that finishes last
    figures, baseline = final["final"], final["baseline"]
    assert sorted(final["done"]) == list(range(count))
    assert (final["answered"], final["failed"]) == (requests, 0), "every request of every shard is answered"
    assert (figures["count"], figures["cache_size"]) == (50, 50)
    assert figures["fds"] <= baseline["fds"], f"host file descriptors leaked: {baseline['fds']} -> {figures['fds']}"
    assert figures["rss_kib"] - baseline["rss_kib"] < RSS_GROWTH_KIB, \
        f"host RSS grew {figures['rss_kib'] - baseline['rss_kib']} KiB over {requests} activations"
    assert final["stopped_cleanly"], "the host did not shut down cleanly on SIGTERM"


def test_a_host_that_never_answers_fails_the_load_instead_of_hanging_it():
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (the kernel does), reads and says nothing
        port = silent.getsockname()[1]
        batches = [[loadgen.request_pdu(PRODUCT, uuid.uuid4()) for _ in range(3)] for _ in range(2)]
        result = asyncio.run(loadgen.run("127.0.0.1", port, batches, concurrency=2, timeout=0.5))
    assert (result.answered, result.failed) == (0, 6)
