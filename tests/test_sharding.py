"""Campaigns split over processes and machines: xdist verdicts, fuzz shards and their merge, the sharded soak."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.cli import main as kmsconf
from conformance.fuzz import campaign as fuzz
from conformance.fuzz import shards
from conformance.harness import clauses as clause_registry
from conformance.fuzz.mutators import Seed
from conformance.net.runner import Runner
from conformance.loadgen import proc_alive

ROOT = Path(__file__).resolve().parents[1]
PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]

# A probe plugin: which clause each check belongs to (from the item, not from the plugin's verdict
# records), and how many verdicts the plugin gathered per clause.
PROBE = '''
import json, os
from conformance.harness.run import run_of
checks = {}

def pytest_runtest_logreport(report):
    for name, value in report.user_properties:
        if name == "clause":
            checks.setdefault(value, set()).add(report.nodeid)

def pytest_sessionfinish(session):
    config = session.config
    if hasattr(config, "workerinput"):
        return
    with open(os.environ["KMS_PROBE_OUT"], "w") as out:
        json.dump({"checks": {c: len(ids) for c, ids in checks.items()},
                   "verdicts": {c: len(v) for c, v in run_of(config).results.items()}}, out)
'''


def run_pytest(tmp_path: Path, args: list[str], env: dict | None = None, timeout: float = 300):
    """pytest in a subprocess from the repository root; its reports go under tmp_path, not reports/."""
    argv = [*PYTEST, f"--summary={tmp_path / 'summary.json'}", f"--fuzz-report={tmp_path / 'fuzz-campaign.json'}",
            *args]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def with_probe(tmp_path: Path) -> dict:
    (tmp_path / "kms_probe.py").write_text(PROBE)
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
            "KMS_PROBE_OUT": str(tmp_path / "probe.json")}


# --- clause verdicts under xdist ---
def test_xdist_run_writes_every_clause_once_and_a_stale_deviation_still_fails_it(tmp_path):
    stale = "KMS-RPC-001"  # the embedded reference host passes it: declaring it a deviation is stale
    expect = tmp_path / "stale.toml"
    expect.write_text(f'[[deviation]]\nclause = "{stale}"\nactual = "Closed"\nreason = "declared to fail, but it passes"\n')
    evidence = tmp_path / "evidence"
    proc = run_pytest(tmp_path, ["-n", "2", "conformance/suite", "-q", f"--basetemp={tmp_path / 'bt'}",
                                 f"--expect={expect}", f"--evidence-dir={evidence}", "-p", "kms_probe"],
                      env=with_probe(tmp_path))
    output = proc.stdout[-3000:] + proc.stderr[-2000:]
    records = {r["clause"]: r for r in json.loads((tmp_path / "summary.json").read_text())}
    assert set(records) == set(clause_registry.load()), output
    assert records[stale]["verdict"] == "xpass", records[stale]
    assert not [c for c, r in records.items() if r["verdict"] == "fail"], output
    assert proc.returncode == 1, output  # only the stale deviation fails the run
    assert records["KMS-ROB-005"]["verdict"] == "skip"  # the campaign needs -m fuzz
    probe = json.loads((tmp_path / "probe.json").read_text())
    assert probe["verdicts"] == probe["checks"], "one verdict per check, gathered on the controller"
    named = {name for r in records.values() for name in r["evidence"]}
    assert len(named) > 20 and named == {p.name for p in evidence.iterdir()}, "the workers' evidence, all of it named"


def test_verdicts_are_gathered_once_per_check_without_xdist(tmp_path):
    clauses = "KMS-RPC-001,KMS-MSG-001,KMS-THR-001"
    proc = run_pytest(tmp_path, ["-p", "no:xdist", "conformance/suite", "-q", f"--clause={clauses}",
                                 "-p", "kms_probe"], env=with_probe(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:]
    probe = json.loads((tmp_path / "probe.json").read_text())
    assert set(probe["checks"]) == set(clauses.split(","))
    assert probe["verdicts"] == probe["checks"]
    assert sum(probe["checks"].values()) > 3, "a clause with several checks (one per protocol version) is counted"
    records = json.loads((tmp_path / "summary.json").read_text())
    assert {r["clause"]: r["verdict"] for r in records} == dict.fromkeys(clauses.split(","), "pass")


# --- fuzz shards ---
def test_shards_divide_the_runs_exactly():
    for total, count in ((300, 1), (300, 7), (5, 8), (20000, 3)):
        shares = [shards.shard_runs(total, i, count) for i in range(count)]
        assert sum(shares) == total and max(shares) - min(shares) <= 1
    with pytest.raises(ValueError):
        shards.shard_runs(10, 2, 2)


def test_a_stream_draws_the_same_mutations_and_other_streams_draw_others(monkeypatch):
    drawn = []
    real_apply = fuzz.apply

    def recording_apply(seed, mutation):
        drawn.append(mutation.describe())
        return real_apply(seed, mutation)

    monkeypatch.setattr(fuzz, "apply", recording_apply)
    monkeypatch.setattr(fuzz, "run_one", lambda runner, bind, request: fuzz.Run("response", "ok", []))
    seed = Seed.default()

    def draw(stream):
        drawn.clear()
        result = fuzz.campaign(Runner("127.0.0.1", 9), lambda: seed.request, runs=120, stream=stream, seed=seed)
        assert result.runs == 120
        return list(drawn)

    first, again = draw(shards.shard_stream(7, 0)), draw(shards.shard_stream(7, 0))
    other = draw(shards.shard_stream(7, 1))
    assert first == again, "a shard is reproducible from its seed and index"
    assert first != other
    # every shard opens with the engine's simplest draw (25 mutations, by design); after it, streams part
    assert first[:25] == other[:25]
    assert len(set(first[25:]) & set(other[25:])) < len(set(first[25:])) / 4, "shards barely overlap (boundary values may)"
    assert first[50:100] != first[:50], "each batch of a stream draws afresh"
    assert len({shards.shard_stream(7, i) for i in range(64)} | {shards.shard_stream(8, 0)}) == 65


def shard(campaign: str, index: int, of: int, runs: int, started: float, seconds: float, findings=(), outcomes=None):
    return {"campaign": campaign, "shard": index, "of": of, "seed": 1, "stream": shards.shard_stream(1, index),
            "machine": f"m{index}", "target": "127.0.0.1:1688", "runs": runs,
            "outcomes": outcomes or {"response": runs}, "seconds": seconds, "rate": runs / seconds,
            "harness_seconds": 0.5, "target_seconds": seconds - 0.5, "started": started, "ended": started + seconds,
            "findings_dir": f"reports/findings/shard-{index}", "findings": list(findings),
            "finding_counts": {f"{f['outcome']}: {f['detail']}": 1 for f in findings}}


def test_merge_adds_shards_up_and_names_missing_ones():
    finding = {"outcome": "violation", "mutation": "bind.flags=0", "detail": "x", "pcap": "/r/finding-001.pcap"}
    a = shard("KMS-ROB-005", 0, 3, 100, 1000.0, 10.0, outcomes={"response": 60, "error": 40})
    b = shard("KMS-ROB-005", 1, 3, 100, 1002.0, 10.0, findings=[finding], outcomes={"response": 50, "violation": 50})
    c = shard("KMS-ROB-005", 2, 3, 100, 1001.0, 9.0)
    merged = shards.merge([b, a, c, a])  # a shard given twice counts once
    assert merged["runs"] == 300 and merged["missing"] == {}
    assert merged["outcomes"] == {"error": 40, "response": 210, "violation": 50}
    assert merged["seconds"] == 12.0 and merged["rate"] == 25.0  # 300 runs from t=1000 to t=1012
    assert [s["shard"] for s in merged["shards"]] == [0, 1, 2]
    assert merged["findings"] == [{"campaign": "KMS-ROB-005", "shard": 1, "machine": "m1", **finding}]
    partial = shards.merge([a, c])
    assert partial["missing"] == {"KMS-ROB-005": [1]} and "INCOMPLETE" in shards.summary_line(partial)
    # reports of several machines merge like their shards
    assert shards.merge(shards.shards_of(partial) + shards.shards_of(b)) == merged


def test_merge_command(tmp_path, capsys):
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    shards.write_report(one, shards.merge([shard("long", 0, 2, 40, 0.0, 4.0)]))
    two.write_text(json.dumps(shard("long", 1, 2, 40, 0.0, 4.0)))  # a shard.json merges as well
    assert kmsconf(["fuzz-merge", str(tmp_path / "all.json"), str(one), str(two)]) == 0
    assert json.loads((tmp_path / "all.json").read_text())["runs"] == 80
    assert "80 runs in 2 shard(s)" in capsys.readouterr().out
    assert kmsconf(["fuzz-merge", str(tmp_path / "part.json"), str(one)]) == 1  # incomplete
    (tmp_path / "bad.json").write_text("{}")
    assert kmsconf(["fuzz-merge", str(tmp_path / "x.json"), str(tmp_path / "bad.json")]) == 2
    assert "not a campaign report" in capsys.readouterr().err


def test_shards_over_execnet_gateways_give_one_clause_verdict_and_one_campaign(tmp_path):
    """The multi-machine recipe, on loopback: execnet gateways with a working directory of their own (as ssh
    ones have), the suite named as a package, not a path (xdist wants paths under an rsync root)."""
    gateway_dir = tmp_path / "gateway"  # xdist copies pytest there, as it would to a remote pyexecnetcache
    gateway_dir.mkdir()
    proc = run_pytest(tmp_path, ["--tx", f"2*popen//python={sys.executable}//chdir={gateway_dir}", "--dist=load",
                                 "-m", "fuzz", "--pyargs", "conformance.suite", "--fuzz-runs=60", "-q"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert not (ROOT / "_pytest").exists()
    assert "2 passed" in proc.stdout
    records = json.loads((tmp_path / "summary.json").read_text())
    assert [(r["clause"], r["verdict"]) for r in records] == [("KMS-ROB-005", "pass")]
    report = json.loads((tmp_path / "fuzz-campaign.json").read_text())
    assert report["runs"] == 60 and report["missing"] == {}
    assert sorted((s["shard"], s["of"], s["runs"]) for s in report["shards"]) == [(0, 2, 30), (1, 2, 30)]
    assert len({s["stream"] for s in report["shards"]}) == 2 and len({s["seed"] for s in report["shards"]}) == 1
    assert "fuzz campaign KMS-ROB-005: 60 runs in 2 shard(s)" in proc.stdout
    for s in report["shards"]:  # each gateway keeps its findings beside --fuzz-report, on its own machine
        assert Path(s["findings_dir"]) == tmp_path / "findings" / f"shard-{s['shard']}"
        assert json.loads((Path(s["findings_dir"]) / "shard.json").read_text())["stream"] == s["stream"]


def test_one_shard_per_job_then_merge(tmp_path):
    """The CI-matrix recipe: each job runs --fuzz-shard I/K with the run's seed, the reports are merged."""
    jobs = [subprocess.Popen([*PYTEST, "-p", "no:xdist", "-q", "-m", "fuzz", "conformance/suite/test_fuzzing.py",
                              f"--fuzz-shard={i}/2", "--fuzz-seed=11", "--fuzz-runs=40",
                              f"--summary={tmp_path / f'job{i}' / 'summary.json'}",
                              f"--fuzz-report={tmp_path / f'job{i}' / 'fuzz-campaign.json'}"],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in (0, 1)]
    for job in jobs:
        out, _ = job.communicate(timeout=120)
        assert job.returncode == 0, out[-3000:]
    merged = tmp_path / "fuzz-campaign.json"
    proc = subprocess.run([sys.executable, "-m", "conformance.cli", "fuzz-merge", str(merged),
                           *(str(tmp_path / f"job{i}" / "fuzz-campaign.json") for i in (0, 1))],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(merged.read_text())
    assert report["runs"] == 40 and report["missing"] == {} and not report["findings"]
    assert [s["stream"] for s in report["shards"]] == [shards.shard_stream(11, 0), shards.shard_stream(11, 1)]
    for i in (0, 1):  # each job's own findings directory, with its shard record
        assert json.loads((tmp_path / f"job{i}" / "findings" / f"shard-{i}" / "shard.json").read_text())["runs"] == 20


# --- the sharded soak ---
def soak_state(basetemp: Path) -> dict:
    return json.loads((basetemp / "soak-host.json").read_text())


def test_soak_shards_in_two_workers_share_one_host_and_the_last_checks_the_model(tmp_path):
    basetemp = tmp_path / "bt"
    proc = run_pytest(tmp_path, ["-n", "2", "-m", "slow", "tests/test_load.py", "-q", f"--basetemp={basetemp}",
                                 "--soak-requests=3000", "--soak-cmids=300"])
    assert proc.returncode == 0 and "2 passed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]
    state = soak_state(basetemp)
    assert state["status"] == "stopped" and state["stopped_cleanly"]
    assert sorted(state["done"]) == [0, 1] and (state["answered"], state["failed"]) == (3000, 0)
    assert (state["final"]["count"], state["final"]["cache_size"]) == (50, 50)
    assert not proc_alive(state["host"]["pid"])
    assert "soak: 3000 answered, 0 failed, by 2 load generator(s)" in proc.stdout


def test_soak_shards_in_one_process_and_a_host_left_by_unfinished_shards_is_stopped(tmp_path):
    basetemp = tmp_path / "bt"
    proc = run_pytest(tmp_path, ["-p", "no:xdist", "-m", "slow", "tests/test_load.py", "-q", "-k", "not shard2of3",
                                 f"--basetemp={basetemp}", "--soak-shards=3", "--soak-requests=3000",
                                 "--soak-cmids=300"])
    assert proc.returncode == 0 and "2 passed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]
    state = soak_state(basetemp)
    assert sorted(state["done"]) == [0, 1] and state["answered"] == 2000  # shards 0 and 1 joined one host
    assert state["status"] == "abandoned" and state["stopped_cleanly"] and not proc_alive(state["host"]["pid"])
    assert "soak: abandoned: 2 of 3 shards finished; the model was not checked" in proc.stdout
