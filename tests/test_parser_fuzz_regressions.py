"""Inputs the coverage-guided fuzzer (conformance/fuzz/coverage.py) found crashing a parser, minimised, now handled."""

import json

from conformance.faults.service import FaultyService
from conformance.faults.session import FaultySession
from conformance.pcap.decode import decode_tcp, exchanges_json
from conformance.pcap.reader import TcpConnection
from conformance.reference.host.config import HostConfig
from conformance.wire import epid, rpc
from conformance.wire.exchange import iso_time

# A V6 request on context 5 whose garbage ciphertext decrypts to request_time 14129378679933871107,
# a FILETIME in the year 46374: `kmsconf decode` died with OverflowError building its JSON.
FAR_FUTURE_REQUEST = bytes.fromhex(
    "050000031000000024010000020000000c010000050000000401000004010000000006001e24c64a9e38fba867707566a1a7d1b6"
    "ec06058e4c3419f5688653356f73acd49b71ae9e5b2a3ad437c66a44273defd05b00003c00000002000000d016d016120132130600"
    "3436363137000100000000000000045d8800000200000020000000050000000300011c000000005e0d0ff2eb505e0c113dc5e47605"
    "8a7fedb655537fd02273c01b2a30154930fbfcf8a13e0000001cef3556b5b64c11d4d524b8d05f8d7a79d7f29bbaa897809de410ff"
    "04fd14753090ac763b46356c9d8504fb05000c13100000003c00000002000000d016d0161201321306003436363137000100000000"
    "000000045d8800000200000020000000050000000300011c00000000"
)

# A bind whose one KMS context offers no transfer syntax at all (n_transfer_syn 0): with the
# accept-all-syntaxes quirk the session raised IndexError instead of answering.
BIND_WITHOUT_TRANSFER_SYNTAX = bytes.fromhex(
    "05000b13100000003c00000000000000d016d0160000006701000000000000007521c8514e845047b0d8ec255555bc0601000000"
    "045d888aeb0000b1"
)

# Day 366 of 9999, a common year: activation_date() raised OverflowError (and validate() with it).
DAY_366_OF_9999 = "00000-00000-000-000000-56-00000-0000.0000-3669999"


def test_request_time_beyond_year_9999_decodes():
    conn = TcpConnection(("192.0.2.1", 49152), ("192.0.2.2", 1688), FAR_FUTURE_REQUEST, b"", 0.0)
    [item] = exchanges_json([decode_tcp(conn)])
    assert item["request"]["request_time"] == "FILETIME 14129378679933871107 (after 9999-12-31)"
    json.dumps(item)
    assert iso_time(2**64 - 1).startswith("FILETIME ") and iso_time(0) == "1601-01-01T00:00:00Z"


def test_bind_context_without_transfer_syntax_is_rejected_not_crashed():
    config = HostConfig()
    reply = FaultySession(FaultyService(config, {"accept-all-syntaxes"}), config).handle(BIND_WITHOUT_TRANSFER_SYNTAX)
    ack = rpc.decode_pdu(reply.data)
    assert isinstance(ack, rpc.BindAck) and not reply.close
    assert [(r.result, r.reason) for r in ack.results] == [(rpc.PROVIDER_REJECTION, rpc.REASON_TRANSFER_SYNTAXES)]


def test_day_366_of_a_common_year_is_no_date():
    assert epid.Epid.parse(DAY_366_OF_9999).activation_date() is None
    assert epid.Epid.parse("05426-00206-271-111111-03-1033-9200.0000-3662024").activation_date().isoformat() == "2024-12-31"
    assert epid.Epid.parse("05426-00206-271-111111-03-1033-9200.0000-3662023").activation_date() is None
    from conformance.catalog import load

    assert any("is not a date" in p for p in epid.validate(DAY_366_OF_9999, load()))
