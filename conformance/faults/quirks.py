"""The faulty host's deliberate deviations: a closed set, each with what it does and the clauses it must break.

A quirk exists only as a member of `Quirk`, so a misspelt one is an AttributeError (in code) or
a ValueError naming the known ones (from a string), never a silently dead fault. `breaks` is the
set of clauses the whole default suite must fail, and only those, against a reference host with
that one quirk (tests/test_fault_isolation.py proves it, fault by fault).
"""

from __future__ import annotations

import enum
from typing import Iterable


class Quirk(enum.Enum):
    def __new__(cls, slug: str, description: str, breaks: tuple[str, ...], needs: dict | None = None):
        member = object.__new__(cls)
        member._value_ = slug
        member.description = description
        member.breaks = frozenset(breaks)
        member.needs = dict(needs or {})  # the host settings it shows with (a quirk of tiered keys needs one)
        return member

    # counting (guide 10.1-10.2)
    COUNT_REPEATS = ("count-repeats", "count a repeated CMID again", ("KMS-THR-002", "KMS-CACHE-005"))
    NO_EXPIRY = ("no-expiry", "never age client entries out", ("KMS-CACHE-004", "KMS-CACHE-005"))
    NO_RENEWAL_REPLACE = ("no-renewal-replace", "a renewal keeps the entry's original time", ("KMS-CACHE-005",))
    FIXED_COUNT = ("fixed-count", "always report the configured fixed_count (default 2 x N, as vlmcsd and py-kms)",
                   ("KMS-THR-003", "KMS-THR-004", "KMS-THR-006", "KMS-CACHE-001", "KMS-CACHE-002", "KMS-CACHE-003",
                    "KMS-CACHE-004", "KMS-CACHE-005", "KMS-CACHE-006"))
    SHRINK_CACHE = ("shrink-cache", "cache capacity follows the latest N instead of the highest",
                    ("KMS-CACHE-003", "KMS-CACHE-006"))
    COUNT_PER_KMS_ID = ("count-per-kms-id", "one count per KMS counted id instead of one per application "
                        "(client and server apart)", ("KMS-THR-003", "KMS-THR-006", "KMS-CACHE-002", "KMS-CACHE-003",
                                                    "KMS-CACHE-006"))
    CACHE_SIZE_50 = ("cache-size-50", "cache capacity 50 whatever N the clients send", ("KMS-CACHE-001",))
    NO_CACHE_GROWTH = ("no-cache-growth", "cache capacity fixed by the first N seen, never grown", ("KMS-CACHE-002",))
    # product groups (Tables 1-2)
    IGNORE_KEY_GROUP = ("ignore-key-group", "activate every KMS id whatever the host key", ("KMS-GRP-003",))
    NON_CUMULATIVE_GROUPS = ("non-cumulative-groups", "a host key activates only its own tier, not the tiers "
                             "below (breaks Table 2)", ("KMS-GRP-001", "KMS-GRP-002", "KMS-GRP-004"),
                             {"key_group": "server-b"})
    EPID_NAMES_OTHER_KEY = ("epid-names-other-key", "Windows answers carry a Windows Server 2019 key's ePID, "
                            "whatever key activates (as vlmcsd)", ("KMS-GRP-004",))
    # timing
    IGNORE_TIME = ("ignore-time", "accept any request time", ("KMS-TIME-003",))
    # KMS messages
    BAD_HASH = ("bad-hash", "corrupt the V5/V6 hash / V4 MAC", ("KMS-MSG-002",))
    BAD_HMAC = ("bad-hmac", "corrupt the V6 HMAC", ("KMS-MSG-002",))
    RANDOM_EPID = ("random-epid", "a new ePID on every request", ("KMS-MSG-005",))
    RANDOM_HWID = ("random-hwid", "a new HwId on every request", ("KMS-MSG-006",))
    WRONG_VERSION = ("wrong-version", "answer with version 6.0 whatever was asked", ("KMS-MSG-001",))
    WRONG_CMID = ("wrong-cmid", "echo a different CMID", ("KMS-MSG-003",))
    WRONG_TIME = ("wrong-time", "echo a different request time", ("KMS-MSG-003",))
    BAD_EPID = ("bad-epid", "an ePID with an invalid LCID (9999)", ("KMS-MSG-004",))
    PAD_RESPONSE = ("pad-response", "append 512 bytes to every KMS response payload", ("KMS-MSG-002", "KMS-MSG-008"))
    REUSE_REQUEST_IV = ("reuse-request-iv", "V6: answer with the request's IV", ("KMS-MSG-009",))
    ACCEPT_BAD_VERSION = ("accept-bad-version", "answer unsupported versions as if they were 6.0", ("KMS-MSG-007",))
    DROP_V5 = ("drop-v5", "close the connection on every V5 request, without an answer",
               ("KMS-MSG-001",))
    SHARED_REQUEST_BUFFER = ("shared-request-buffer", "requests wait 20 ms in one host-wide slot and each answer "
                             "is for whatever request is there then (a race between connections)", ("KMS-MSG-010",))
    # DCE/RPC
    NO_CALL_ID_ECHO = ("no-call-id-echo", "answer every PDU with call_id 2", ("KMS-RPC-006",))
    IGNORE_OPNUM = ("ignore-opnum", "treat any opnum as RequestActivation", ("KMS-RPC-008",))
    ACCEPT_FOREIGN_INTERFACE = ("accept-foreign-interface", "accept binds for any interface", ("KMS-RPC-007",))
    NO_MPX_MIRROR = ("no-mpx-mirror", "always set PFC_CONC_MPX in bind_ack", ("KMS-RPC-004",))
    CLOSE_AFTER_RESPONSE = ("close-after-response", "close the connection after each response", ("KMS-RPC-011",))
    REJECT_NDR32 = ("reject-ndr32", "never accept the NDR32 transfer syntax (so alter_context for it fails too)",
                    ("KMS-RPC-001", "KMS-RPC-005"))
    ACCEPT_ALL_SYNTAXES = ("accept-all-syntaxes", "accept every offered KMS transfer syntax, not exactly one",
                           ("KMS-RPC-002",))
    ZERO_ASSOC_GROUP = ("zero-assoc-group", "answer binds with assoc_group 0", ("KMS-RPC-003",))
    NO_ALTER_CONTEXT = ("no-alter-context", "close the connection on alter_context", ("KMS-RPC-005",))
    PROCESS_UNBOUND_CONTEXT = ("process-unbound-context", "serve requests on contexts never accepted (as NDR32)",
                               ("KMS-RPC-009",))
    BAD_ALLOC_HINT = ("bad-alloc-hint", "alloc_hint 0 in responses", ("KMS-RPC-010",))
    REQUIRE_MPX = ("require-mpx", "close binds that do not set PFC_CONC_MPX", ("KMS-RPC-012",))
    # robustness
    CRASH_ON_MALFORMED = ("crash-on-malformed", "stop serving after the first malformed input",
                          ("KMS-ROB-006",))
    ANSWER_SHORT_PAYLOAD = ("answer-short-payload", "answer a payload too short to read with the last answer",
                            ("KMS-ROB-002",))
    ANSWER_UNKNOWN_PTYPE = ("answer-unknown-ptype", "answer a PDU of an unknown type with an empty response PDU",
                            ("KMS-ROB-003",))
    PROCESS_CUT_PDU = ("process-cut-pdu", "on EOF, take what arrived for the whole PDU whatever frag_length said "
                       "(as py-kms)", ("KMS-ROB-004",))

    @classmethod
    def parse(cls, names: Iterable["str | Quirk"]) -> frozenset["Quirk"]:
        """Quirks from their slugs; an unknown slug is a ValueError listing the known ones."""
        out = set()
        for name in names:
            if isinstance(name, Quirk):
                out.add(name)
                continue
            try:
                out.add(cls(name))
            except ValueError:
                known = ", ".join(q.value for q in cls)
                raise ValueError(f"unknown quirk {name!r} (known: {known})") from None
        return frozenset(out)
