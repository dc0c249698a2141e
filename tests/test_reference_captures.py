"""captures/reference: regenerated from the reference host and client, each decodes as its README says."""

from pathlib import Path

import pytest

from conformance.pcap.decode import decode_capture, exchanges_json
from conformance.pcap.generate import SCENARIOS, generate

COMMITTED = Path(__file__).resolve().parents[1] / "captures" / "reference"
EXPECTED = {  # scenario -> what the host's answer must be
    "error_unknown_version": {"hresult_name": "ERROR_INVALID_DATA"},
    "error_product_group": {"hresult_name": "SL_E_VL_KEY_MANAGEMENT_SERVICE_ID_MISMATCH"},
    "error_request_time": {"hresult_name": "SL_E_VL_INVALID_TIMESTAMP"},
    "error_fault_opnum": {"fault_name": "NCA_S_OP_RNG_ERROR"},
    "error_fault_unknown_context": {"fault_name": "NCA_S_UNK_IF"},
}


def check_capture(path: Path) -> None:
    exchanges = exchanges_json(decode_capture(path))
    expected = EXPECTED.get(path.stem)
    assert exchanges, path
    for ex in exchanges:
        if expected is None:
            assert ex["response"]["verified"], (path.name, ex)
        else:
            assert expected.items() <= ex["response"].items(), (path.name, ex["response"])
    if path.stem == "v6_multi3_sameconn":
        assert [e["call_id"] for e in exchanges] == [2, 3, 4]


def test_generate_writes_every_scenario_and_each_decodes(tmp_path):
    written = generate(tmp_path)
    assert {p.stem for p in written} == set(SCENARIOS)
    readme = (tmp_path / "README.md").read_text()
    for path in written:
        assert f"`{path.name}`" in readme
        check_capture(path)


@pytest.mark.parametrize("path", sorted(COMMITTED.glob("*.pcap")), ids=lambda p: p.stem)
def test_committed_reference_capture_decodes(path):
    check_capture(path)


def test_a_request_of_an_unknown_version_keeps_what_it_shows_in_clear():
    """`vlmcs -K 7.0`: the request does not open, but its clear version, lengths, IV and bytes are shown."""
    path = Path(__file__).resolve().parents[1] / "captures/reference/error_unknown_version.pcap"
    (item,) = exchanges_json(decode_capture(path))
    request = item["request"]
    assert request["version"] == "7.0" and request["payload_length"] == 260 and len(request["payload"]) == 520
    assert "7.0 is not supported" in request["error"] and len(request["iv_if_encrypted"]) == 32
    assert item["response"]["hresult_name"] == "ERROR_INVALID_DATA"
