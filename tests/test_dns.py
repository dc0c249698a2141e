"""DNS SRV publication and discovery against a real BIND named on loopback (PROTOCOL.md 12)."""

import json
import random
from collections import Counter

import pytest

from conformance import catalog
from conformance.dns.lab import DnsLab, find_named
from conformance.reference.client.activation import activate
from conformance.wire.requests import build_request
from conformance.reference.host.config import HostConfig
from conformance.reference.client.discovery import DiscoveringClient, DiscoveryError, rfc2782_order
from conformance.reference.host.publish import Publisher, PublishTarget
from conformance.dns.srv import SrvRecord, query_srv, resolve
from conformance.reference.host.server import HostThread
from conformance.wire import hresult

pytestmark = pytest.mark.skipif(find_named() is None, reason="BIND's named not installed (make setup installs bind9)")
ZONE = "kms.test"


@pytest.fixture
def lab():
    with DnsLab(zones=(ZONE, "branch.test")) as running:
        yield running


def start_host(lab, address, label, priority, weight, **extra):
    config = HostConfig(host=address, port=0, dns_publish=True, dns_server=lab.address, dns_hostname=label,
                        dns_publish_list=(f"{ZONE},{priority},{weight}",), **extra)
    thread = HostThread(config)
    thread.start()
    assert thread.host.publish_results == [(ZONE, True, "NOERROR")]
    return thread


def test_three_hosts_publish_and_client_discovers_fails_over_and_caches(lab):
    hosts = {
        "kms1": start_host(lab, "127.0.0.2", "kms1", 0, 10),
        "kms2": start_host(lab, "127.0.0.3", "kms2", 0, 30),
        "kms3": start_host(lab, "127.0.0.4", "kms3", 10, 50),
    }
    try:
        records = {r.target: r for r in query_srv(ZONE, lab.address)}
        assert set(records) == {f"{n}.{ZONE}." for n in hosts}
        assert records[f"kms3.{ZONE}."].priority == 10 and records[f"kms2.{ZONE}."].weight == 30
        assert resolve(f"kms1.{ZONE}.", lab.address) == ["127.0.0.2"]

        request = build_request(catalog.load().edition("Windows 10/11 Enterprise"))
        client = DiscoveringClient([ZONE], lab.address, random.Random(7))
        attempts = []

        def attempt(host, port):
            attempts.append(host)
            try:
                return activate(host, port, request, timeout=2).verified
            except OSError:
                return False

        first = client.run(attempt)
        assert first[0] in ("127.0.0.2", "127.0.0.3"), "priority 0 hosts come first"
        assert client.cached == first
        attempts.clear()
        assert client.run(attempt) == first and attempts == [first[0]], "renewal goes to the cached host"

        # the chosen host stops: the cached attempt fails, DNS is asked again, the other priority-0 host answers
        chosen = next(t for t in hosts.values() if t.host.address[0] == first[0])
        chosen.stop()
        attempts.clear()
        second = client.run(attempt)
        assert second != first and second[0] in ("127.0.0.2", "127.0.0.3")
        assert client.cached == second
        assert attempts[0] == first[0]
    finally:
        for thread in hosts.values():
            if thread._thread.is_alive():
                thread.stop()


def test_publish_list_and_changed_port_republishes(lab):
    publisher = Publisher(lab.address, "kmsx", "127.0.0.5", 1688,
                          [PublishTarget.parse(f"{ZONE},5,20"), PublishTarget.parse("branch.test")])
    assert [ok for _, ok, _ in publisher.publish()] == [True, True]
    publisher.port = 21688
    publisher.publish()
    assert query_srv(ZONE, lab.address) == [SrvRecord(5, 20, 21688, f"kmsx.{ZONE}.")]
    assert query_srv("branch.test", lab.address) == [SrvRecord(0, 0, 21688, "kmsx.branch.test.")]
    publisher.unpublish()
    assert query_srv(ZONE, lab.address) == []


def test_refused_update_is_logged_as_12293_and_host_keeps_serving(tmp_path):
    events = tmp_path / "events.jsonl"
    with DnsLab(zones=(ZONE,), allow_update=False) as lab:
        thread = HostThread(HostConfig(port=0, dns_publish=True, dns_server=lab.address, dns_hostname="kms1",
                                       dns_publish_list=(ZONE,), event_log=str(events)))
        host, port = thread.start()
        try:
            assert thread.host.publish_results == [(ZONE, False, "REFUSED")]
            assert activate(host, port, build_request(catalog.load().edition("Windows 7 Enterprise"))).verified
        finally:
            thread.stop()
    logged = [json.loads(line) for line in events.read_text().splitlines()]
    assert any(e.get("event") == 12293 and e["result"] == "REFUSED" for e in logged)


def test_no_records_and_unresolvable_target_give_clear_errors(lab):
    client = DiscoveringClient([ZONE], lab.address)
    with pytest.raises(DiscoveryError, match="no _vlmcs._tcp SRV record") as err:
        client.run(lambda h, p: True)
    assert err.value.code == hresult.SL_E_VL_BINDING_SERVICE_UNAVAILABLE
    import dns.query
    import dns.update

    update = dns.update.UpdateMessage(ZONE)
    update.add("_vlmcs._tcp", 300, "SRV", f"0 0 1688 ghost.{ZONE}.")
    dns.query.tcp(update, *lab.address[:1], port=lab.port, timeout=3)
    with pytest.raises(DiscoveryError, match="resolves to an address"):
        client.run(lambda h, p: True)
    assert client.tried[-1][2] == "target has no address"


def test_manual_host_turns_discovery_off_and_clearing_turns_it_back_on(lab):
    client = DiscoveringClient([ZONE], lab.address)
    client.set_kms("127.0.0.9", 1688)
    assert client.run(lambda h, p: True) == ("127.0.0.9", 1688)
    client.clear_kms()
    with pytest.raises(DiscoveryError, match="no _vlmcs._tcp SRV record"):
        client.run(lambda h, p: True)


def test_weighted_selection_follows_weights_chi_square():
    # three records of one priority, weights 10 / 30 / 60: the first pick must follow 1:3:6
    records = [SrvRecord(0, w, 1688, f"h{w}.") for w in (10, 30, 60)]
    rng = random.Random(2026)
    draws = 6000
    firsts = Counter(rfc2782_order(records, rng)[0].weight for _ in range(draws))
    total_weight = 100 + 1  # RFC 2782 draws 0..sum inclusive
    expected = {10: 11 / total_weight, 30: 30 / total_weight, 60: 60 / total_weight}
    chi2 = sum((firsts[w] - draws * p) ** 2 / (draws * p) for w, p in expected.items())
    assert chi2 < 13.8, (firsts, chi2)  # p = 0.001 with 2 degrees of freedom


def test_priority_always_wins_and_zero_weight_keeps_a_small_chance():
    rng = random.Random(1)
    records = [SrvRecord(5, 100, 1, "late."), SrvRecord(0, 0, 1, "zero."), SrvRecord(0, 100, 1, "heavy.")]
    orders = [rfc2782_order(records, rng) for _ in range(2000)]
    assert all(o[-1].target == "late." for o in orders)
    zero_first = sum(o[0].target == "zero." for o in orders)
    assert 0 < zero_first < 100


def test_dns_lab_says_it_runs_until_ctrl_c_and_stops_on_it():
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "conformance.cli", "dns-lab"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(4)]
        assert lines[0].startswith("named (BIND) on 127.0.0.1:") and "until Ctrl-C" in lines[3], lines
    finally:
        proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0, proc.stderr.read()
