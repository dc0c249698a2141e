"""Wireshark agrees: tshark dissects every capture the project writes without malformed packets or errors."""

import shutil
from pathlib import Path

import pytest

from conformance.pcap.generate import generate
from conformance.pcap.reader import read_connections

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None,
                                reason="tshark not installed (make setup installs Debian's tshark)")
EXPERT_ERROR = str(0x00800000)  # Wireshark PI_ERROR (0x00400000 is a note, e.g. "Fault: nca_op_rng_error")


def dissect(path: Path) -> list:
    import pyshark

    port = read_connections(path)[0].host[1]
    capture = pyshark.FileCapture(str(path), decode_as={f"tcp.port=={port}": "dcerpc"},
                                  override_prefs={"tcp.desegment_tcp_streams": "TRUE"})
    try:
        return list(capture)
    finally:
        capture.close()


@pytest.fixture(scope="module")
def captures(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("captures"))


def test_every_generated_capture_dissects_cleanly(captures):
    seen_types = set()
    for path in captures:
        for packet in dissect(path):
            layers = [layer.layer_name for layer in packet.layers]
            assert "_ws.malformed" not in layers and "malformed" not in layers, (path.name, packet.number)
            for layer in packet.layers:
                severity = getattr(layer, "_ws_expert_severity", None) or getattr(layer, "expert_severity", None)
                assert str(severity) != EXPERT_ERROR, (path.name, packet.number, layer.layer_name)
            if "dcerpc" in layers:
                seen_types.add(int(packet.dcerpc.pkt_type))
    # bind, bind_ack, alter_context(_resp), request, response and fault all went through the dissector
    assert {0, 2, 3, 11, 12, 14, 15} <= seen_types, seen_types


def test_kms_payload_sizes_as_wireshark_reads_them(captures):
    path = next(p for p in captures if p.stem == "v4_win7ent_ndr32")
    lengths = {int(p.dcerpc.pkt_type): int(p.dcerpc.cn_frag_len) for p in dissect(path) if "dcerpc" in
               [layer.layer_name for layer in p.layers]}
    assert lengths[11] == 72 and lengths[0] == 284  # PROTOCOL.md 1: bind with one context, V4 request over NDR32


def test_a_malformed_pdu_is_flagged(tmp_path, captures):
    """The check above can fail: a bind_ack whose context count runs past its frag_length is malformed."""
    from conformance.pcap.writer import write_pcap
    from conformance.wire import rpc

    ack = bytearray(rpc.BindAck([rpc.ContextResult(0, 0, rpc.NDR32, 2)], sec_addr=b"1688\0").encode())
    ack[32] = 9  # n_results (after header, 10 fixed bytes, "1688\0" and 1 pad byte): claims nine, carries one
    bind = rpc.Bind([rpc.ContextElement(0)]).encode()
    path = write_pcap(tmp_path / "bad.pcap", [[("client", bind), ("host", bytes(ack))]], host=("127.0.0.1", 1688))
    flagged = [p for p in dissect(path) if "_ws.malformed" in [layer.layer_name for layer in p.layers]
               or any(str(getattr(layer, "_ws_expert_severity", "")) == EXPERT_ERROR for layer in p.layers)]
    assert flagged
