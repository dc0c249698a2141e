"""The scapy layers dissect every KMS packet of the third-party captures as the decoder does."""

from pathlib import Path

import pytest
from scapy.layers.dcerpc import DceRpc5Request, DceRpc5Response
from scapy.utils import rdpcap

from conformance.pcap import layers
from conformance.pcap.decode import decode_capture

THIRD_PARTY = Path(__file__).resolve().parents[2] / "shared" / "captures" / "third-party"
pytestmark = pytest.mark.skipif(not THIRD_PARTY.is_dir(), reason=f"{THIRD_PARTY} not present (shared/ beside the checkout)")


def kms_bases(path: Path) -> tuple[list, list]:
    requests, responses = [], []
    for pkt in rdpcap(str(path)):
        if layers.KmsEncrypted in pkt:
            base = pkt[layers.KmsEncrypted].decrypt()
        elif layers.KmsRequestBase in pkt:
            base = pkt[layers.KmsRequestBase]
        elif layers.KmsResponseBase in pkt:
            base = pkt[layers.KmsResponseBase]
        else:
            continue
        (requests if DceRpc5Request in pkt else responses).append(base)
        assert DceRpc5Request in pkt or DceRpc5Response in pkt
    return requests, responses


@pytest.mark.parametrize("path", sorted(THIRD_PARTY.glob("*.pcap")) if THIRD_PARTY.is_dir() else [], ids=lambda p: p.stem)
def test_layers_agree_with_decoder(path):
    requests, responses = kms_bases(path)
    exchanges = [e for c in decode_capture(path) for e in c.kms]
    assert len(requests) == len(responses) == len(exchanges)
    for req, resp, ex in zip(requests, responses, exchanges):
        assert req.cmid == ex.request.request.cmid and req.n_policy == ex.request.request.n_policy
        assert req.kms_id == ex.request.request.kms_id
        assert resp.count == ex.response.response.count and resp.cmid == req.cmid
        assert bytes(resp.epid).decode("utf-16-le").rstrip("\x00") == ex.response.response.epid


def test_show_prints_kms_fields(capsys):
    pkt = next(p for p in rdpcap(str(THIRD_PARTY / "vlmcsd_v4_win7ent_vm_t1.pcap")) if layers.KmsRequestBase in p)
    pkt.show()
    out = capsys.readouterr().out
    assert "KMS request base" in out and "n_policy" in out and "'ftp.oracle.com.tw'" in out
