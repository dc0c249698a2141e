"""The process monitor against a real crashing target (tests/crashing_host.py, a subprocess): a segfault, a
sanitizer report, a hang (the host serves nobody) and a timeout (one connection never answered, the others
served) are each reported once however often they fire, the target is restarted after each but the timeout,
every input is shrunk to its trigger, and a target that forks per connection loses a child, not itself."""

from __future__ import annotations

import dataclasses
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.cli import main
from conformance.fuzz.campaign import Campaign, replay_finding
from conformance.fuzz.findings import Finding
from conformance.process.monitor import TargetCommand, TargetProcess
from conformance.fuzz.mutators import Mutation, Seed, apply
from conformance.fuzz.program import Program, Step
from conformance.net.runner import Runner
from conformance.wire import framing

HOST = Path(__file__).with_name("crashing_host.py")
SEGV, ASAN = "SIGSEGV", "AddressSanitizer: heap-buffer-overflow"
HANG = "no answer within 0.5 s, on a fresh connection either"
STALL = "no answer within N.N s (connection left open)"


def command(*extra: str) -> str:
    return " ".join([shlex.quote(sys.executable), shlex.quote(str(HOST)), "{port}", *extra])


def fuzz(argv: list[str], capsys) -> tuple[int, dict]:
    code = main(["fuzz", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def input_of(finding: dict) -> Program:
    return Program.from_json(json.loads(Path(finding["pcap"]).with_suffix(".json").read_text())["input"])


def test_campaign_reports_each_planted_bug_once_restarts_the_target_and_shrinks_each_input_to_its_trigger(
        tmp_path, capsys):
    code, out = fuzz(["--target-cmd", command(), "--runs", "400", "--random-seed", "3", "--connections", "2",
                      "--timeout", "0.5", "--findings", str(tmp_path)], capsys)
    assert code == 1
    found = {f["kind"]: f for f in out["findings"]}
    assert set(found) == {SEGV, ASAN, HANG, STALL} and len(out["findings"]) == 4, out["finding_counts"]
    segv, asan, hang, stall = found[SEGV], found[ASAN], found[HANG], found[STALL]
    assert (segv["outcome"], segv["frames"]) == ("crash", ["string_at", "planted", "serve"])
    assert (asan["outcome"], asan["frames"]) == ("crash", ["check_vm", "handle_request", "serve_connection"])
    assert "SIGABRT" in asan["detail"], "the report and the process's end are one event"
    assert (hang["outcome"], stall["outcome"]) == ("hang", "timeout")
    # one finding per bug, however often it fired; every crash and hang was followed by a restart, a timeout not
    # (how often each fired varies with timing, 3 to 5 times here: the counts are not pinned, their keys are)
    assert out["finding_counts"] == {f"crash: {SEGV} in string_at < planted < serve": segv["count"],
                                     f"crash: {ASAN} in check_vm < handle_request < serve_connection": asan["count"],
                                     f"hang: {HANG}": hang["count"], f"timeout: {STALL}": stall["count"]}, \
        out["finding_counts"]
    assert max(segv["count"], asan["count"]) >= 2
    assert out["restarts"] >= segv["count"] + asan["count"] + hang["count"]
    assert all(f["reproduced"] and f["pdus"] == 1 for f in found.values())
    # shrunk to the trigger: the top bit of the opnum, of the assoc_group, of max_recv, of the KMS request's vm
    # (through the encryption: the request is re-sealed with only that field changed)
    (request,) = input_of(segv).steps
    assert request.kind == "request" and request.changed_bytes == 1 and request.data[23] & 0x80
    (bind,) = input_of(hang).steps
    assert bind.kind == "bind" and bind.changed_bytes == 1 and bind.data[23] & 0x80
    (bind,) = input_of(stall).steps
    assert bind.kind == "bind" and bind.changed_bytes == 1 and bind.data[19] & 0x80
    (sealed,) = input_of(asan).steps
    mine = framing.open_request(sealed.payload).request
    standard = framing.open_request(sealed.base[sealed.payload_offset:]).request
    assert mine.vm & 0x80000000 and dataclasses.replace(mine, vm=standard.vm) == standard
    assert sealed.data[: sealed.payload_offset] == sealed.base[: sealed.payload_offset]
    # each finding says what happened, around it in the target's output, and how to see it again
    text = Path(asan["pcap"]).with_suffix(".txt").read_text()
    assert "==ERROR: AddressSanitizer: heap-buffer-overflow" in text and "target output around it:" in text
    replay = shlex.split(segv["replay"])
    assert replay[:3] == ["kmsconf", "fuzz", "--replay"] and main(replay[1:]) == 1
    assert "crash: SIGSEGV in string_at < planted < serve" in capsys.readouterr().out


def test_a_target_that_forks_per_connection_loses_a_child_and_goes_on(tmp_path):
    seed = Seed.default()
    with TargetProcess(TargetCommand.parse(command("--fork"))) as target:
        parent = target.proc.pid
        runner = Runner(*target.address, 2.0)
        for mutation, seen in ((Mutation("request", "opnum", 0x8000), "crash: SIGSEGV in string_at < planted < serve"),
                               (Mutation("kms", "vm", 0xFFFFFFFF), f"crash: {ASAN} in check_vm")):
            lines = replay_finding(Program.pair(*apply(seed, mutation), seed.standard()), runner, target)
            assert lines[0].startswith(seen), lines
            assert target.alive() and target.proc.pid == parent and target.starts == 1, "no restart: the parent lives"
        assert runner.activate(seed.request).verified


def test_an_input_bloated_with_other_connections_pdus_and_bytes_shrinks_to_the_one_byte_that_matters(tmp_path):
    seed = Seed.default()
    bind, request = seed.standard()
    crashing = apply(seed, Mutation("request", "opnum", 0xFFFF))[1]
    noisy = bytearray(crashing)
    noisy[12:20] = b"\x07\x00\x00\x00\xff\x00\x00\x00"  # call_id and alloc_hint changed too
    steps = (Step(0, bind, bind), Step(1, bind, bind), Step(0, request, request), Step(1, request, request),
             Step(2, apply(seed, Mutation("bind", "max_xmit", 1))[0], bind), Step(0, bytes(noisy), request))
    bloated = Program(steps, "by hand")
    with TargetProcess(TargetCommand.parse(command("--fork"))) as target:
        campaign = Campaign(Runner(*target.address, 1.0), lambda: seed.request, seed, tmp_path, monitor=target)
        try:
            (signature,) = campaign.signatures_of(bloated)
            assert signature[:2] == ("crash", SEGV)
            campaign.minimise(finding := Finding(*signature, "by hand", bloated), bloated)
        finally:
            campaign.inflight.close()
    (step,) = finding.input.steps
    assert finding.original == bloated and (step.kind, step.changed_bytes) == ("request", 1)
    assert step.data[23] == 0xFF and finding.shrink_executions < 60


@pytest.mark.parametrize("argv,message", [
    (["--target-cmd", "/bin/true"], "put {port} where the target takes the port"),
    (["--target-cmd", "/nonexistent/vlmcsd -L 127.0.0.1:{port}"], "is not an executable"),
    (["--target-cmd", "'unclosed {port}"], "No closing quotation"),
    (["--target", "127.0.0.1:1688", "--target-cmd", "/bin/true {port}"], "name two targets"),
    ([], "give the target"),
    (["--target-cmd", "/bin/true {port}", "--connections", "0"], "--connections 0"),
    (["--target-cmd", "/bin/true {port}", "--sequences", "1.5"], "--sequences 1.5"),
    (["--replay", "/nonexistent.pcap", "--target", "127.0.0.1:1688"], "--replay /nonexistent.pcap"),
])
def test_a_mistake_in_the_options_is_one_line_and_exit_2(argv, message, capsys):
    assert main(["fuzz", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_a_target_that_exits_before_listening_is_one_line_with_its_last_words(capsys):
    code = main(["fuzz", "--target-cmd", "/bin/sh -c 'echo cannot bind {port}; exit 3'", "--runs", "5"])
    err = capsys.readouterr().err
    assert code == 1 and "exited (exit status 3) before listening" in err and "cannot bind" in err


ROOT = Path(__file__).resolve().parents[1]


def suite(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "conformance" / "suite" / "test_fuzzing.py"),
                           "-q", "-p", "no:cacheprovider", "-p", "no:xdist", f"--summary={tmp_path / 'summary.json'}",
                           f"--fuzz-report={tmp_path / 'fuzz-campaign.json'}", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_the_suite_s_fuzz_clause_fuzzes_a_target_that_forks_per_connection_and_sees_its_children_crash(tmp_path):
    proc = suite(tmp_path, "-m", "fuzz", "--target-cmd", command("--fork", "--bugs", "segv,asan"), "--fuzz-runs", "300",
                 "--fuzz-seed", "3")
    (record,) = json.loads((tmp_path / "summary.json").read_text())
    assert (record["clause"], record["verdict"]) == ("KMS-ROB-005", "fail"), proc.stdout[-3000:]
    assert "crash x" in record["message"] and "--target-cmd" in record["message"], record["message"]
    report = json.loads((tmp_path / "fuzz-campaign.json").read_text())
    assert {f["kind"] for f in report["findings"]} == {SEGV, ASAN} and report["runs"] == 300
    for finding in report["findings"]:
        assert finding["reproduced"] and finding["pdus"] == 1
        assert "the target ended" not in finding["detail"], "a child died, the target did not"
    assert report["shards"][0]["restarts"] == 0


@pytest.mark.parametrize("args,says", [
    (["-m", "fuzz", "--target-cmd", "/bin/true"], "put {port}"),
    (["--target", "127.0.0.1:1688", "--target-cmd", command()], "name two hosts"),
])
def test_a_mistake_in_the_suite_s_target_cmd_is_one_line_and_exit_2(tmp_path, args, says):
    proc = suite(tmp_path, *args)
    assert proc.returncode == 2 and says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
