"""Fuzzing: a short campaign finds nothing against the reference host and finds a broken one."""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings

from conformance.cli import main
from conformance.fuzz.campaign import campaign
from conformance.fuzz.mutators import Seed, apply, mutations
from conformance.net.runner import Runner
from conformance.reference.config import HostConfig
from conformance.reference.host import HostThread
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
    assert result.runs == 150 and not result.findings, [(f.mutation, f.detail) for f in result.findings]
    assert {"response", "error"} <= set(result.outcomes)


def test_campaign_reports_violations_with_reproducers(tmp_path, capsys):
    with HostThread(HostConfig(port=0, quirks=frozenset({"bad-hmac"}))) as thread:
        host, port = thread.host.address
        code = main(["fuzz", "--target", f"{host}:{port}", "--runs", "40", "--findings", str(tmp_path), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["findings"], out
    finding = out["findings"][0]
    assert finding["outcome"] == "violation" and "hmac" in finding["detail"]
    assert Path(finding["pcap"]).exists() and "kmsconf replay" in Path(finding["pcap"]).with_suffix(".txt").read_text()


@pytest.mark.fuzz
def test_long_campaign(fuzz_shard, pytestconfig):
    """One shard of the long campaign (--fuzz-runs over all shards), against this process's own host."""
    runs = pytestconfig.getoption("--fuzz-runs") or 2000
    from conformance.harness.target import Target

    with HostThread(HostConfig(port=0)) as thread:
        host, port = thread.host.address
        result = fuzz_shard.run(Target(host, port), runs, name="long", campaign_dir="long", timeout=2)
    assert not result.findings, [(f.mutation, f.detail) for f in result.findings]


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
