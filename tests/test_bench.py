"""`make bench` keeps working: every figure present and positive, bad arguments refused (no timing asserted)."""

import json
import subprocess
import sys


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
                    "concurrent_64_rps", "echo_one_connection_rps", "client_us_per_exchange"):
            assert row[key] > 0, (version, key)
    assert set(results["without"]) == {"asyncio event loop instead of uvloop", "pure-Python Rijndael rounds"}
    assert results["fuzz"]["runs"] > 0 and results["suite"]["exit_status"] == 0
    assert "written to" in done.stdout and "without (pure-Python Rijndael rounds)" in done.stdout


def test_bench_refuses_a_missing_vlmcs(tmp_path):
    done = subprocess.run([sys.executable, "-m", "conformance.bench", "--vlmcs", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "not an executable file" in done.stderr
