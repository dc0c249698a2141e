"""`make bench` keeps working: every figure present and positive, bad arguments refused (no timing asserted)."""

import json
import os
import subprocess
import sys

import pytest


def test_bench_writes_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "conformance.bench", "--seconds", "0.2", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["host"] == {"event_loop": "uvloop", "rijndael": "compiled"}
    for version in ("v4", "v5", "v6"):
        row = results["figures"][version]
        for key in ("one_connection_rps", "new_connection_rps", "concurrent_1_rps", "concurrent_8_rps",
                    "concurrent_64_rps", "echo_one_connection_rps", "echo_concurrent_64_rps",
                    "client_us_per_exchange"):
            assert row[key] > 0, (version, key)
    assert set(results["without"]) == {"asyncio event loop instead of uvloop", "pure-Python Rijndael rounds"}
    idle = results["idle_connections"]
    assert idle["held"] >= 1000 and idle["reference_kib_per_idle_connection"] > 0
    assert 0 < idle["reference_seconds_to_activate"]
    assert "vlmcs_load" not in results, "no vlmcs given, no vlmcs figures"
    assert results["fuzz"]["runs"] > 0 and results["suite"]["exit_status"] == 0
    assert "written to" in done.stdout and "without (pure-Python Rijndael rounds)" in done.stdout
    assert "idle connections:" in done.stdout


@pytest.mark.interop
def test_bench_loads_the_host_and_vlmcsd_with_vlmcs(tmp_path):
    """With VLMCS and VLMCSD (binaries built outside this project) in the environment, as `make bench` takes them."""
    vlmcs, vlmcsd = os.environ.get("VLMCS"), os.environ.get("VLMCSD")
    if not (vlmcs and vlmcsd and os.access(vlmcs, os.X_OK) and os.access(vlmcsd, os.X_OK)):
        pytest.skip(reason="set VLMCS and VLMCSD to a vlmcs and a vlmcsd you built")
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "conformance.bench", "--seconds", "0.2", "--out", str(out),
                           "--vlmcs", vlmcs, "--vlmcsd", vlmcsd], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    loads = json.loads(out.read_text())["vlmcs_load"]
    for load in ("one_connection", "new_connection", "concurrent_64"):
        row = loads[load]
        for name in ("reference", "reference_1_worker"):
            assert row[f"{name}_rps"] > 0 and row[f"{name}_ratio"] > 0 and row["vlmcsd_rps"] > 0
            assert row[f"{name}_cpu_us_per_request"] > 0
    assert loads["floor"]["echo_rps"] > 0 and "vlmcsd_us_above_floor" in loads["floor"]
    assert loads["rounds"] == 5
    assert json.loads(out.read_text())["idle_connections"]["vlmcsd_kib_per_idle_connection"] > 0


def test_bench_refuses_a_missing_vlmcs(tmp_path):
    done = subprocess.run([sys.executable, "-m", "conformance.bench", "--vlmcs", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "not an executable file" in done.stderr
