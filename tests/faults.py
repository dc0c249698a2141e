"""Every fault of the faulty reference host, the clauses it must break (and only those), and what they must say.

A fault is a quirk (conformance/faults/quirks.py, with the settings it shows with) or a
setting a host can be misconfigured with. `pins` names, per broken clause, the part of its
structured verdict that names the broken rule: ("actual" | "expected", text that must appear).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from conformance.faults.quirks import Quirk


@dataclass(frozen=True)
class Fault:
    name: str
    config: dict
    breaks: frozenset[str]
    pins: dict[str, tuple[str, str]] = field(default_factory=dict)
    hides: frozenset[str] = frozenset()  # clauses the fault makes unobservable (inconclusive or skip, saying why)

    @property
    def baseline(self) -> dict:
        """The same host without the fault: what the suite says of it is the comparison."""
        return {k: v for k, v in self.config.items() if k not in ("quirks", "fixed_count")}


PINS: dict[str, dict[str, tuple[str, str]]] = {
    "count-repeats": {"KMS-THR-002": ("expected", "again for the same CMID")},
    "no-expiry": {"KMS-CACHE-004": ("expected", "gone after 30 days")},
    "no-renewal-replace": {"KMS-CACHE-005": ("expected", "the renewed client and a newcomer")},
    "fixed-count": {"KMS-THR-006": ("actual", '"N=5": 10'), "KMS-CACHE-006": ("actual", "10")},
    "shrink-cache": {"KMS-CACHE-003": ("actual", "[10, 10"), "KMS-CACHE-006": ("actual", "10")},
    "count-per-kms-id": {"KMS-THR-003": ("actual", "[1, 2, 3, 1]")},
    "cache-size-50": {"KMS-CACHE-001": ("actual", "11, 12")},
    "no-cache-growth": {"KMS-CACHE-002": ("actual", "[10, 10")},
    "ignore-key-group": {"KMS-GRP-003": ("actual", "Response")},
    "non-cumulative-groups": {"KMS-GRP-001": ("actual", "refusal 0xC004F042"),
                              "KMS-GRP-002": ("actual", '"client-vl": "none"')},
    "epid-names-other-key": {"KMS-GRP-004": ("actual", "Windows Server 2019")},
    "ignore-time": {"KMS-TIME-003": ("actual", "Response")},
    "bad-hash": {"KMS-MSG-002": ("actual", "failed: mac")},
    "bad-hmac": {"KMS-MSG-002": ("actual", "failed: hmac")},
    "random-epid": {"KMS-MSG-005": ("expected", "the same ePID twice")},
    "random-hwid": {"KMS-MSG-006": ("expected", "the same HwId twice")},
    "wrong-version": {"KMS-MSG-001": ("actual", "6.0")},
    "wrong-cmid": {"KMS-MSG-003": ("expected", "CMID")},
    "wrong-time": {"KMS-MSG-003": ("expected", "request time")},
    "bad-epid": {"KMS-MSG-004": ("actual", "LCID 9999")},
    "pad-response": {"KMS-MSG-002": ("actual", "failed: padding"), "KMS-MSG-008": ("expected", "response PDU of")},
    "reuse-request-iv": {"KMS-MSG-009": ("expected", "a response IV different from the request IV")},
    "accept-bad-version": {"KMS-MSG-007": ("actual", "Response")},
    "shared-request-buffer": {"KMS-MSG-010": ("actual", "request_time")},
    "no-call-id-echo": {"KMS-RPC-006": ("actual", "0x2")},
    "ignore-opnum": {"KMS-RPC-008": ("actual", "Response")},
    "accept-foreign-interface": {"KMS-RPC-007": ("actual", '["0/0"]')},
    "no-mpx-mirror": {"KMS-RPC-004": ("actual", "0x13")},
    "close-after-response": {"KMS-RPC-011": ("actual", "Closed")},
    "reject-ndr32": {"KMS-RPC-001": ("actual", "[[2,"), "KMS-RPC-005": ("actual", "[[2, 2,")},
    "accept-all-syntaxes": {"KMS-RPC-002": ("expected", "exactly one of NDR32/NDR64 accepted")},
    "zero-assoc-group": {"KMS-RPC-003": ("expected", "a non-zero assoc_group")},
    "no-alter-context": {"KMS-RPC-005": ("actual", "Closed")},
    "process-unbound-context": {"KMS-RPC-009": ("actual", "Response")},
    "bad-alloc-hint": {"KMS-RPC-010": ("expected", "alloc_hint")},
    "require-mpx": {"KMS-RPC-012": ("actual", "Closed")},
    "crash-on-malformed": {"KMS-ROB-006": ("message", "the host stopped accepting connections")},
    "answer-short-payload": {"KMS-ROB-002": ("actual", "Response")},
    "answer-unknown-ptype": {"KMS-ROB-003": ("actual", "Response")},
    "process-cut-pdu": {"KMS-ROB-004": ("actual", "BindAck")},
}

# what each fault makes unobservable, and why: a count stuck at its cap shows no +1; an answer that does not
# open shows no field; a bind refused shows no flags to mirror; a shrinking cache shows no steady count
HIDES: dict[str, frozenset[str]] = {
    "fixed-count": frozenset({"KMS-THR-001", "KMS-THR-002"}),
    "shrink-cache": frozenset({"KMS-THR-006"}),
    "wrong-version": frozenset({"KMS-MSG-002", "KMS-MSG-003", "KMS-MSG-004", "KMS-MSG-005", "KMS-MSG-008",
                                "KMS-THR-003"}),
    "require-mpx": frozenset({"KMS-RPC-004"}),
    # a host that stops serving: the check it died in and every check after it say they could not run
    "crash-on-malformed": frozenset({"KMS-ROB-001", "KMS-ROB-002", "KMS-ROB-003", "KMS-ROB-004"}),
    # a Server B key that no longer activates the client editions below it: no N = 25 edition to count with
    "non-cumulative-groups": frozenset({"KMS-CACHE-002", "KMS-CACHE-003", "KMS-CACHE-006", "KMS-THR-003",
                                        "KMS-THR-006"}),
}

COUNTS = ("KMS-CACHE-001", "KMS-CACHE-002", "KMS-CACHE-004", "KMS-CACHE-005", "KMS-THR-003", "KMS-THR-004")
FAULTS = [Fault(q.value, {"quirks": frozenset({q}), **q.needs}, q.breaks, PINS.get(q.value, {}),
                HIDES.get(q.value, frozenset())) for q in Quirk] + [
    Fault("activation-interval-60", {"activation_interval": 60}, frozenset({"KMS-TIME-001"}),
          {"KMS-TIME-001": ("actual", "60 min")}),
    Fault("renewal-interval-1440", {"renewal_interval": 1440}, frozenset({"KMS-TIME-002"}),
          {"KMS-TIME-002": ("actual", "1440 min")}),
    Fault("time-tolerance-1h", {"time_tolerance": 3600}, frozenset({"KMS-TIME-004"}),
          {"KMS-TIME-004": ("actual", "Refusal(0xC004F06C)")}),
    # a count stuck at one value: below 25 it breaks the +1 rule too; above 50 the cap
    Fault("fixed-count-3", {"quirks": frozenset({Quirk.FIXED_COUNT}), "fixed_count": 3},
          frozenset({*COUNTS, "KMS-THR-001"}), {"KMS-THR-001": ("actual", "3 -> 3")},
          frozenset({"KMS-CACHE-003", "KMS-CACHE-006", "KMS-THR-002"})),
    Fault("fixed-count-30", {"quirks": frozenset({Quirk.FIXED_COUNT}), "fixed_count": 30},
          frozenset({*COUNTS, "KMS-THR-001"}), {"KMS-THR-004": ("actual", "client 1: count 30")},
          frozenset({"KMS-CACHE-003", "KMS-THR-002"})),
    Fault("fixed-count-60", {"quirks": frozenset({Quirk.FIXED_COUNT}), "fixed_count": 60},
          frozenset({*COUNTS, "KMS-THR-005"}) - {"KMS-CACHE-002"}, {"KMS-THR-005": ("actual", "60 (answering")},
          frozenset({"KMS-CACHE-002", "KMS-CACHE-003", "KMS-THR-001", "KMS-THR-002"})),
]
