"""A short coverage-guided run of every atheris target (conformance/fuzz/coverage.py); `make fuzz-long` runs them longer.

atheris ends the process when fuzzing stops, so each run is a subprocess. A fixed
libFuzzer seed and a run budget keep the runs repeatable; the time limit is a backstop.
"""

import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("atheris", reason="atheris is not installed (pip install -e '.[dev]')")

TARGETS = ("rpc", "ndr", "framing", "epid", "exchange", "pcap", "session", "all")
RUNS = {"pcap": 500, "session": 3000, "exchange": 3000, "all": 3000}  # the rest: 10000


def fuzz(target, tmp_path, *flags, env=None):
    crashes = tmp_path / "crashes"
    crashes.mkdir(exist_ok=True)
    command = [sys.executable, "-m", "conformance.fuzz.coverage", target, f"-artifact_prefix={crashes}/",
               "-print_final_stats=1", *flags]
    return run(command, env), sorted(crashes.iterdir())


def run(command, env=None):
    """libFuzzer reports on stderr, atheris prints the escaping exception on stdout: one stream for both."""
    return subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def stat(output, name):
    found = re.search(rf"^stat::{name}:\s+(\d+)", output, re.M)
    assert found, f"no stat::{name} in libFuzzer's output:\n{output[-3000:]}"
    return int(found.group(1))


@pytest.mark.parametrize("target", TARGETS)
def test_short_run_finds_nothing_and_grows_coverage(target, tmp_path):
    done, crashes = fuzz(target, tmp_path, "-seed=1", f"-runs={RUNS.get(target, 10000)}", "-max_total_time=4",
                         "--seed-corpus", str(tmp_path / "corpus"))
    out = done.stdout
    assert done.returncode == 0 and not crashes, out[-3000:]
    inited = re.search(r"INITED cov: (\d+) ft: (\d+) corp: (\d+)", out)
    assert inited, out[-3000:]
    assert int(inited.group(3)) > 1, "the seed corpus from the captures was not loaded"
    assert stat(out, "number_of_executed_units") > int(inited.group(3)), "no input beyond the seeds was executed"
    final = [(int(c), int(f)) for c, f in re.findall(r"cov: (\d+) ft: (\d+)", out)][-1]
    assert final[1] > int(inited.group(2)) and stat(out, "new_units_added") > 0, "coverage never grew past the seeds"


def test_harness_reports_an_escaping_exception(tmp_path):
    """With the documented errors made fatal, the first rejected input must become a saved crash."""
    done, crashes = fuzz("rpc", tmp_path, "-seed=1", "-runs=1000", env={"CONFORMANCE_FUZZ_STRICT": "1"})
    assert done.returncode != 0 and "Uncaught Python exception" in done.stdout, done.stdout[-3000:]
    assert "DecodeError" in done.stdout and len(crashes) == 1
    # the saved input replays: fatal in strict mode, an ordinary rejection otherwise
    replay = [sys.executable, "-m", "conformance.fuzz.coverage", "rpc", str(crashes[0])]
    strict, normal = run(replay, {"CONFORMANCE_FUZZ_STRICT": "1"}), run(replay, {"CONFORMANCE_FUZZ_STRICT": "0"})
    assert strict.returncode != 0 and normal.returncode == 0, (strict.stdout[-2000:], normal.stdout[-2000:])
