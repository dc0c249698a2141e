"""Fuzzing: a short campaign finds nothing against the reference host and finds a broken one; sequences reach
the RPC state a single exchange cannot."""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings

from conformance.cli import main
from conformance.faults.host import faulty_host_thread
from conformance.fuzz.campaign import campaign
from conformance.fuzz.mutators import Seed, apply, mutations
from conformance.fuzz.program import run_program
from conformance.fuzz.sequences import Bind, Request, Sequence, render, sequences
from conformance.net.runner import Runner
from conformance.reference.host.config import HostConfig
from conformance.reference.host.server import HostThread
from conformance.wire import rpc


@settings(max_examples=200, deadline=None)
@given(mutations())
def test_every_mutation_yields_bytes_to_send(mutation):
    bind, request = apply(Seed.default(), mutation)
    assert isinstance(bind, bytes) and isinstance(request, bytes)


def test_kms_field_mutations_are_reencrypted_not_broken():
    from conformance.fuzz.mutators import Mutation
    from conformance.wire import framing, ndr

    _, request = apply(Seed.default(), Mutation("kms", "n_policy", 7))
    payload = ndr.decode_request_stub(rpc.decode_pdu(request).stub)
    opened = framing.open_request(payload)
    assert opened.verified and opened.request.n_policy == 7


def test_short_campaign_against_reference_host_finds_nothing(tmp_path):
    with HostThread(HostConfig(port=0)) as thread:
        host, port = thread.host.address
        seed = Seed.default()
        result = campaign(Runner(host, port, 2), lambda: seed.request, runs=150, findings_dir=tmp_path, seed=seed)
        assert thread.host.stats.malformed > 0, "the campaign never reached the host's error paths"
    assert result.runs == 150 and not result.findings, [(f.input.describe(), f.detail) for f in result.findings]
    assert {"response", "error"} <= set(result.outcomes)


def test_campaign_reports_violations_with_reproducers(tmp_path, capsys):
    with faulty_host_thread(HostConfig(port=0), {"bad-hmac"}) as thread:
        host, port = thread.host.address
        code = main(["fuzz", "--target", f"{host}:{port}", "--runs", "40", "--findings", str(tmp_path), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["findings"], out
    finding = out["findings"][0]
    assert finding["outcome"] == "violation" and "hmac" in finding["detail"]
    assert Path(finding["pcap"]).exists() and "kmsconf fuzz --replay" in Path(finding["pcap"]).with_suffix(".txt").read_text()


def test_a_second_campaign_numbers_its_findings_after_the_first_s(tmp_path, capsys):
    with faulty_host_thread(HostConfig(port=0), {"bad-hmac"}) as thread:
        target = "{}:{}".format(*thread.host.address)
        for _ in range(2):
            assert main(["fuzz", "--target", target, "--runs", "20", "--findings", str(tmp_path), "--json"]) == 1
    capsys.readouterr()
    assert sorted(p.name for p in tmp_path.glob("*.pcap")) == ["finding-001-violation.pcap",
                                                                "finding-002-violation.pcap"]


@pytest.mark.fuzz
def test_long_campaign(fuzz_shard, pytestconfig):
    """One shard of the long campaign (--fuzz-runs over all shards), against this process's own host."""
    runs = pytestconfig.getoption("--fuzz-runs") or 2000
    from conformance.harness.target import Target

    with HostThread(HostConfig(port=0)) as thread:
        host, port = thread.host.address
        result = fuzz_shard.run(Target(host, port), runs, name="long", campaign_dir="long", timeout=2)
    assert not result.findings, [(f.input.describe(), f.detail) for f in result.findings]


# (the faulty host's quirk, the clause the fuzz campaign must fail against it)
FAULTS = [("bad-hmac", "KMS-ROB-005")]


@pytest.mark.parametrize("quirk,clause", FAULTS)
def test_fuzz_clause_fails_against_a_host_with_broken_integrity(tmp_path, quirk, clause):
    from faulty import run_suite

    report = tmp_path / "fuzz" / "fuzz-campaign.json"
    records = run_suite(tmp_path, clauses=[clause], quirks=frozenset({quirk}),
                        extra=["-m", "fuzz", "--fuzz-shards", "2", "--fuzz-runs", "60", "--fuzz-report", str(report)])
    # two shards, one verdict: the worst of the shards'
    assert records[clause]["verdict"] == "fail", records[clause]
    assert "mutated exchanges (shard" in records[clause]["message"]
    merged = json.loads(report.read_text())
    assert [s["shard"] for s in merged["shards"]] == [0, 1] and merged["runs"] == 60
    assert merged["findings"] and all(Path(f["pcap"]).is_relative_to(tmp_path / "fuzz" / "findings")
                                      for f in merged["findings"])


# --- stateful sequences ---
@settings(max_examples=100, deadline=None)
@given(sequences())
def test_every_sequence_renders_to_pdus_on_at_most_three_connections_each_opened_by_a_bind_when_asked(sequence):
    program = render(Seed.default(), sequence)
    assert 1 <= len(program.connections) <= 3 and all(s.base for s in program.steps)
    assert len(program.steps) >= len(sequence.actions)
    if sequence.prologue:
        firsts = {}
        for step in program.steps:
            firsts.setdefault(step.connection, step.kind)
        assert set(firsts.values()) == {"bind"}


def run_alone(program, host, port):
    import asyncio

    return asyncio.run(run_program(program, host, port, 2.0))


def test_sequences_reach_the_rpc_state_a_single_exchange_cannot():
    seed = Seed.default()
    ndr32 = Bind(False, ("ndr32",), True)
    with HostThread(HostConfig(port=0)) as thread:
        host, port = thread.host.address
        # a request on a context never accepted, before any bind
        orphan = run_alone(render(seed, Sequence(((0, Request(0, 0, False)),), False)), host, port)
        assert orphan.outcome == "fault" and "0x1C010003" in orphan.answer.label, orphan.detail
        # several requests on one connection, the last on a context the bind did not accept
        several = render(seed, Sequence(((0, ndr32), (0, Request(0, 0, False)), (0, Request(0, 0, False)),
                                         (0, Request(3, 0, False))), False))
        run = run_alone(several, host, port)
        assert run.outcome == "fault" and [side for side, _ in run.transcript].count("host") == 4
        # alter_context, then a request on the context it accepted; interleaved with another connection
        interleaved = render(seed, Sequence(((0, ndr32), (1, ndr32), (0, Bind(True, ("ndr32",), False)),
                                             (1, Request(0, 0, False)), (0, Request(0, 0, False))), False))
        run = run_alone(interleaved, host, port)
        assert run.outcome == "response" and [len(t) for t in run.transcripts] == [6, 4]


def test_a_campaign_with_sequences_and_exchanges_in_flight_finds_nothing_against_the_reference_host(tmp_path):
    with HostThread(HostConfig(port=0)) as thread:
        host, port = thread.host.address
        seed = Seed.default()
        result = campaign(Runner(host, port, 2), lambda: seed.request, runs=300, findings_dir=tmp_path, seed=seed,
                          sequences=0.5, connections=4, stream=5)
    assert result.runs == 300 and not result.findings, [f.detail for f in result.findings]
    assert {"response", "fault", "bind_ack"} <= set(result.outcomes)
