"""`make bench`'s fuzzing yardstick: a monitored campaign's executions/s against vlmcsd, beside what vlmcs
itself gets from that same vlmcsd process with a new connection per request (`vlmcs -T`), in the same run.

One execution of a single-exchange input is what vlmcs -T does once: connect, bind, request, read the
answer; so the ratio compares like with like. vlmcs and vlmcsd are binaries the user builds; nothing of
them ships here. vlmcs is timed before and after the campaigns, and the mean is the yardstick.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from conformance.net.runner import Runner

from .campaign import campaign
from .monitor import TargetCommand, TargetProcess
from .mutators import Seed

PRODUCT = "Windows Server 2019 Datacenter"  # the campaign's seed request (Seed.default(6)), so both send V6 alike
CONNECTIONS = (1, 4, 8)


def vlmcs_new_connection_rate(vlmcs: str, address: tuple[str, int], requests: int) -> float:
    started = time.perf_counter()
    done = subprocess.run([vlmcs, f"{address[0]}:{address[1]}", "-6", "-l", PRODUCT, "-n", str(requests), "-T"],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          timeout=600)
    seconds = time.perf_counter() - started
    # vlmcs exits 0 even when a request fails: its stderr says so
    if done.returncode or "rror" in done.stderr:
        raise RuntimeError(f"vlmcs against {address[0]}:{address[1]}: {done.stderr.strip()[-300:]}")
    return requests / seconds


def versus_vlmcs(vlmcs: str, vlmcsd: str, seconds: float) -> dict:
    """Executions/s with 1, 4 and 8 exchanges in flight (single-exchange inputs, findings counted but not
    minimised: this is the campaign's pace, not its minimiser's), and each as a share of vlmcs -T's rate."""
    seed = Seed.default()
    command = TargetCommand.parse(f"{vlmcsd} -D -N1 -L 127.0.0.1:{{port}}")  # no -e: neither side pays for a log
    with TargetProcess(command) as target, tempfile.TemporaryDirectory() as scratch:
        before = vlmcs_new_connection_rate(vlmcs, target.address, max(int(seconds * 500), 200))
        rows = {}
        for k in CONNECTIONS:
            result = campaign(Runner(*target.address, 3.0), lambda: seed.request, runs=max(int(seconds * before), 300),
                              findings_dir=Path(scratch) / f"k{k}", seed=seed, monitor=target, connections=k,
                              shrink=False)
            rows[k] = {"executions_per_second": result.rate, "cpu_us_per_execution": 1e6 * result.cpu_seconds / result.runs,
                       "runs": result.runs, "restarts": result.restarts}
        after = vlmcs_new_connection_rate(vlmcs, target.address, max(int(seconds * 500), 200))
    yardstick = (before + after) / 2
    for row in rows.values():
        row["share_of_vlmcs"] = row["executions_per_second"] / yardstick
    return {"vlmcs_new_connection_rps": yardstick, "vlmcs_before_after": [before, after],
            "connections": {str(k): row for k, row in rows.items()}}
