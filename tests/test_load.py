"""The reference host under load: counts match the model, nothing leaks (file descriptors, memory)."""

import asyncio
import os
import uuid

import pytest

from conformance import loadgen
from conformance.reference.config import HostConfig
from conformance.reference.host import HostThread

PRODUCT = "Windows 10/11 Enterprise"  # V6, N = 25: the cache holds 50


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))


def test_thousand_concurrent_connections_each_activating():
    cmids = [uuid.uuid4() for _ in range(1000)]
    pdus = [[loadgen.request_pdu(PRODUCT, c)] for c in cmids]
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


@pytest.mark.slow
def test_sustained_100k_activations_from_10k_cmids():
    cmids = [uuid.uuid4() for _ in range(10_000)]
    # 1000 connections of 100 requests; CMIDs repeat ten times each (renewals)
    batches = [[loadgen.request_pdu(PRODUCT, cmids[(i * 100 + j) % 10_000]) for j in range(100)] for i in range(1000)]
    with HostThread(HostConfig(port=0)) as thread:
        host, port = thread.host.address
        asyncio.run(loadgen.run(host, port, batches[:50], concurrency=64))  # warm-up: steady-state memory
        fds, rss = open_fds(), rss_kib()
        result = asyncio.run(loadgen.run(host, port, batches, concurrency=64))
        status = thread.call(thread.host.service.status)
        after_fds, after_rss = open_fds(), rss_kib()
    assert (result.answered, result.failed) == (100_000, 0)
    assert (status["count"], status["cache_size"]) == (50, 50)
    assert after_fds <= fds
    assert after_rss - rss < 50 * 1024, f"RSS grew {after_rss - rss} KiB over 100k activations"
