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
from conformance.process.monitor import TargetCommand, TargetProcess
from .mutators import Seed

PRODUCT = "Windows Server 2019 Datacenter"  # the campaign's seed request (Seed.default(6)), so both send V6 alike
CONNECTIONS = (1, 4, 8)


def vlmcs_rate(vlmcs: str, address: tuple[str, int], requests: int, *extra: str, processes: int = 1) -> float:
    """V6 requests per second of `processes` vlmcs processes at once, `requests` each; `extra` are vlmcs options
    (-T: a new connection per request). The one vlmcs wrapper: `make bench`'s vlmcs loads run through it too."""
    started = time.perf_counter()
    procs = [subprocess.Popen([vlmcs, f"{address[0]}:{address[1]}", "-6", "-l", PRODUCT, "-n", str(requests), *extra],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(processes)]
    errors = [proc.communicate(timeout=600)[1] for proc in procs]
    seconds = time.perf_counter() - started
    for proc, err in zip(procs, errors):
        # vlmcs exits 0 even when a request fails: its stderr says so
        if proc.returncode or "rror" in err:
            raise RuntimeError(f"{' '.join(['vlmcs', *extra])} exited {proc.returncode} against "
                               f"{address[0]}:{address[1]}: {err.strip()[-300:]}")
    return processes * requests / seconds


def versus_vlmcs(vlmcs: str, vlmcsd: str, seconds: float) -> dict:
    """Executions/s with 1, 4 and 8 exchanges in flight (single-exchange inputs, findings counted but not
    minimised: this is the campaign's pace, not its minimiser's), and each as a share of vlmcs -T's rate."""
    seed = Seed.default()
    command = TargetCommand.parse(f"{vlmcsd} -D -N1 -L 127.0.0.1:{{port}}")  # no -e: neither side pays for a log
    with TargetProcess(command) as target, tempfile.TemporaryDirectory() as scratch:
        before = vlmcs_rate(vlmcs, target.address, max(int(seconds * 500), 200), "-T")
        rows = {}
        for k in CONNECTIONS:
            result = campaign(Runner(*target.address, 3.0), lambda: seed.request, runs=max(int(seconds * before), 300),
                              findings_dir=Path(scratch) / f"k{k}", seed=seed, monitor=target, connections=k,
                              shrink=False)
            rows[k] = {"executions_per_second": result.rate, "cpu_us_per_execution": 1e6 * result.cpu_seconds / result.runs,
                       "runs": result.runs, "restarts": result.restarts}
        after = vlmcs_rate(vlmcs, target.address, max(int(seconds * 500), 200), "-T")
    yardstick = (before + after) / 2
    for row in rows.values():
        row["share_of_vlmcs"] = row["executions_per_second"] / yardstick
    return {"vlmcs_new_connection_rps": yardstick, "vlmcs_before_after": [before, after],
            "connections": {str(k): row for k, row in rows.items()}}
