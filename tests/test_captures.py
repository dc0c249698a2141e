"""Every third-party capture decodes completely and agrees, field by field, with vlmcs's own decode (.txt);
the PROTOCOL.md 13.2-13.4 payloads re-encode byte for byte; every RPC PDU in every capture round-trips."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conformance.pcap.decode import decode_capture
from conformance.pcap.reader import read_connections
from conformance.wire import crypto, framing, ndr, rpc
from conformance.wire.messages import REQUEST_BASE_SIZE, datetime_from_filetime

SHARED = Path(__file__).resolve().parents[2] / "shared"
THIRD_PARTY = SHARED / "captures" / "third-party"
PROTOCOL_MD = SHARED / "PROTOCOL.md"
CAPTURES = sorted(THIRD_PARTY.glob("*.pcap")) if THIRD_PARTY.is_dir() else []


@pytest.fixture(autouse=True, scope="module")
def _shared_present():
    if not THIRD_PARTY.is_dir() or not CAPTURES:
        pytest.skip(reason=f"../shared/captures/third-party not present: {THIRD_PARTY} is missing or holds no .pcap "
                    "(the shared/ folder belongs beside the checkout)")
    if not PROTOCOL_MD.is_file():
        pytest.skip(reason=f"../shared/PROTOCOL.md not present: {PROTOCOL_MD}")


# --- vlmcs's decode (.txt) ---

REQUEST_LABELS = {
    "version": "Protocol version",
    "vm": "Client is a virtual machine",
    "status": "Licensing status",
    "remaining": "Remaining time (0 = forever)",
    "app_id": "Application ID",
    "sku_id": "SKU ID (aka Activation ID)",
    "kms_id": "KMS ID (aka KMS counted ID)",
    "cmid": "Client machine ID",
    "previous_cmid": "Previous client machine ID",
    "time": "Client request timestamp (UTC)",
    "workstation": "Workstation name",
    "n_policy": "N count policy (minimum clients)",
}
RESPONSE_LABELS = {
    "size": "Size of KMS Response",
    "version": "Protocol version",
    "epid": "KMS host extended PID",
    "cmid": "Client machine ID",
    "time": "Client request timestamp (UTC)",
    "count": "KMS host current active clients",
    "renewal": "Renewal interval policy",
    "activation": "Activation interval policy",
}
HWID_LABEL = "KMS host Hardware ID"
FIELD_LINE = re.compile(r"^([A-Z][^:\n]*?)\s*: (.*?)\s*$", re.M)


def _fields(block: str, labels: dict[str, str], optional: tuple[str, ...] = ()) -> dict[str, str]:
    found = {k: v for k, v in FIELD_LINE.findall(block)}
    missing = [label for label in labels.values() if label not in found]
    assert not missing, f"vlmcs block lacks {missing}:\n{block}"
    out = {key: found[label] for key, label in labels.items()}
    out.update({label: found[label] for label in optional if label in found})
    return out


def vlmcs_exchanges(text: str) -> list[tuple[dict[str, str], dict[str, str]]]:
    """(request fields, response fields) per "Request Parameters" / "Response from KMS server" pair, in order."""
    pairs = []
    for chunk in re.split(r"^Request Parameters\n=+\n", text, flags=re.M)[1:]:
        request_part, sep, response_part = chunk.partition("Response from KMS server")
        assert sep, f"a request block without a response block:\n{chunk}"
        pairs.append((_fields(request_part, REQUEST_LABELS), _fields(response_part, RESPONSE_LABELS, (HWID_LABEL,))))
    return pairs


def utc(filetime: int) -> str:
    return datetime_from_filetime(filetime).strftime("%Y-%m-%d %H:%M:%S")


def guid_of(text: str) -> str:
    """'55c92734-... (Windows)' -> '55c92734-...'"""
    return text.split()[0].lower()


def kms_exchanges(path: Path):
    return [e for conn in decode_capture(path) for e in conn.kms]


def test_every_capture_has_its_vlmcs_decode():
    for path in CAPTURES:
        assert path.with_suffix(".txt").is_file(), f"{path.name} has no vlmcs decode beside it"


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)
def test_capture_matches_vlmcs_decode_field_by_field(path):
    expected = vlmcs_exchanges(path.with_suffix(".txt").read_text())
    assert expected, f"no Request Parameters block in {path.with_suffix('.txt').name}"
    exchanges = kms_exchanges(path)
    assert len(exchanges) == len(expected), "number of KMS exchanges differs from vlmcs's decode"
    for n, (ex, (want_req, want_resp)) in enumerate(zip(exchanges, expected), 1):
        where = f"{path.stem} exchange {n}"
        assert not ex.errors, (where, ex.errors)
        assert ex.request is not None and ex.response is not None and ex.hresult is None, where

        # request
        r = ex.request.request
        assert f"{r.major}.{r.minor}" == want_req["version"], where
        assert {"Yes": 1, "No": 0}[want_req["vm"]] == r.vm, where
        assert int(want_req["status"].split()[0]) == r.license_status, where
        assert want_req["remaining"] == f"{r.binding_expiration} minutes", where
        assert guid_of(want_req["app_id"]) == str(r.app_id), where
        assert guid_of(want_req["sku_id"]) == str(r.sku_id), where
        assert guid_of(want_req["kms_id"]) == str(r.kms_id), where
        assert want_req["cmid"] == str(r.cmid), where
        assert want_req["previous_cmid"] == str(r.previous_cmid), where
        assert want_req["time"] == utc(r.request_time), where
        assert want_req["workstation"] == r.workstation, where
        assert int(want_req["n_policy"]) == r.n_policy, where
        assert ex.request.checks and all(ex.request.checks.values()), (where, ex.request.checks)

        # response
        resp = ex.response
        body, code = ndr.decode_response_stub(ex.host.stub, ex.ndr64)
        size = int(want_resp["size"].split()[0])
        assert want_resp["size"] == f"{size} (0x{size:x})", where
        assert len(body) == size and code == 0, where
        assert f"{resp.response.major}.{resp.response.minor}" == want_resp["version"], where
        assert resp.major == r.major, where
        assert resp.response.epid == want_resp["epid"], where
        if resp.major == 6:
            assert HWID_LABEL in want_resp, f"{where}: vlmcs printed no HwId for a V6 response"
            assert resp.hwid.hex().upper() == want_resp[HWID_LABEL], where
        else:
            assert HWID_LABEL not in want_resp and resp.hwid == b"", where
        assert want_resp["cmid"] == str(resp.response.cmid) == str(r.cmid), where
        assert want_resp["time"] == utc(resp.response.request_time), where
        assert resp.response.request_time == r.request_time, where
        assert int(want_resp["count"]) == resp.response.count, where
        assert int(want_resp["renewal"]) == resp.response.renewal_interval, where
        assert int(want_resp["activation"]) == resp.response.activation_interval, where
        assert resp.checks, where
        assert all(resp.checks.values()), (where, resp.checks)
        assert resp.verified, where
        expected_checks = {4: {"mac"}, 5: {"padding", "inner_version", "iv_echo", "hash"},
                           6: {"padding", "inner_version", "xored_ivs", "hmac", "hash"}}[resp.major]
        assert set(resp.checks) == expected_checks, where


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)
def test_every_rpc_pdu_round_trips(path):
    connections = read_connections(path)
    assert connections
    total = 0
    for conn in connections:
        for stream in (conn.client_stream, conn.host_stream):
            pdus, rest = rpc.split_stream(stream)
            assert rest == b"", f"{len(rest)} bytes of an incomplete PDU at the end of a stream"
            for raw in pdus:
                pdu = rpc.decode_pdu(raw)
                assert pdu.encode() == raw, (path.stem, type(pdu).__name__)
                total += 1
    assert total >= 4  # at least bind, bind_ack, request, response


# --- PROTOCOL.md 13.2-13.4 ---

def section(doc: str, number: str) -> str:
    match = re.search(rf"^### {re.escape(number)}\b.*?(?=^### |^## |\Z)", doc, re.M | re.S)
    assert match, f"PROTOCOL.md has no section {number}"
    return match.group(0)


def hex_blocks(text: str) -> list[bytes]:
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", text, re.M | re.S)
    return [bytes.fromhex("".join(b.split())) for b in blocks if re.fullmatch(r"[0-9a-f\s]+", b)]


def table_values(text: str) -> dict[str, str]:
    """| item | `hex` | rows -> {item: hex}."""
    return {item.strip(): value for item, value in re.findall(r"^\|\s*([^|]+?)\s*\|\s*`([0-9a-f]+)`\s*\|", text, re.M)}


def value(table: dict[str, str], prefix: str) -> bytes:
    hits = [table[prefix]] if prefix in table else [v for k, v in table.items() if k.startswith(prefix)]
    assert len(hits) == 1, f"{prefix!r} names {len(hits)} rows of {sorted(table)}"
    return bytes.fromhex(hits[0])


@pytest.fixture(scope="module")
def doc() -> str:
    if not PROTOCOL_MD.is_file():
        pytest.skip(reason=f"../shared/PROTOCOL.md not present: {PROTOCOL_MD}")
    return PROTOCOL_MD.read_text()


def capture_payloads(stem: str) -> list[tuple[bytes, bytes]]:
    """(request payload, response payload) of every exchange of a third-party capture."""
    out = []
    for ex in kms_exchanges(THIRD_PARTY / f"{stem}.pcap"):
        request = ndr.decode_request_stub(ex.client.stub, ex.ndr64)
        response, _ = ndr.decode_response_stub(ex.host.stub, ex.ndr64)
        out.append((request, response))
    return out


def test_section_13_2_v4_bytes(doc):
    text = section(doc, "13.2")
    request, response = hex_blocks(text)
    assert (len(request), len(response)) == (252, 160)
    assert capture_payloads("vlmcsd_v4_win7ent_vm_t1") == [(request, response)]
    macs = dict(re.findall(r"^(Request|Response) MAC.*= `([0-9a-f]{32})`", text, re.M))
    assert crypto.v4_mac(request[:236]).hex() == macs["Request"] == request[236:].hex()
    assert crypto.v4_mac(response[:144]).hex() == macs["Response"] == response[144:].hex()

    opened = framing.open_request(request)
    assert opened.verified and opened.request.vm == 1 and opened.request.workstation == "ftp.oracle.com.tw"
    assert opened.request.workstation_tail, "the garbage after the workstation NUL must be kept"
    assert framing.seal_request(opened.request) == request
    answer = framing.open_response(response)
    assert answer.verified and answer.response.epid == "06401-00206-562-389532-03-15361-9600.0000-3612019"
    assert framing.seal_response(answer.response, opened) == response


def test_section_13_3_v5_bytes(doc):
    text = section(doc, "13.3")
    request, response = hex_blocks(text)
    table = table_values(text)
    assert (len(request), len(response)) == (260, 228)
    assert capture_payloads("pykms_v5_win8ent_default") == [(request, response)]

    iv = value(table, "Request IV")
    opened = framing.open_request(request)
    assert opened.verified and opened.iv == iv
    assert opened.decrypted_iv == value(table, "D_K5(IV)")
    plain = crypto.V5_AES.cbc_decrypt(iv, request[20:])
    assert plain[:32] == value(table, "Request plaintext, first 32 bytes")
    assert plain[REQUEST_BASE_SIZE:] == value(table, "Request padding")
    assert framing.seal_request(opened.request, iv) == request

    answer = framing.open_response(response, iv)
    assert answer.verified and answer.iv == iv
    response_plain = crypto.V5_AES.cbc_decrypt(iv, response[20:])
    assert len(response_plain) == 192 + 16 and response_plain[192:] == b"\x10" * 16
    assert answer.random_xored_ivs == value(table, "RandomXoredIVs")
    random = value(table, "Random = ")
    assert crypto.xor(answer.random_xored_ivs, opened.decrypted_iv) == random
    assert answer.hash == value(table, "Hash") == crypto.sha256(random)
    assert framing.seal_response(answer.response, opened, random=random) == response


def test_section_13_4_v6_bytes(doc):
    text = section(doc, "13.4")
    request, response, response_plain = hex_blocks(text)[:3]
    table = table_values(text)
    assert (len(request), len(response), len(response_plain)) == (260, 260, 240)
    assert capture_payloads("vlmcsd_v6_ws2019dc_default") == [(request, response)]

    iv = value(table, "Request IV")
    opened = framing.open_request(request)
    assert opened.verified and opened.iv == iv
    assert opened.decrypted_iv == value(table, "D_K6′(request IV)")
    assert framing.seal_request(opened.request, iv) == request

    response_iv = value(table, "Response IV")
    answer = framing.open_response(response, iv)
    assert answer.verified and answer.iv == response_iv
    assert crypto.V6_AES.cbc_decrypt(response_iv, response[20:]) == response_plain
    assert response_plain[-8:] == b"\x08" * 8
    block = value(table, "R = ")
    assert crypto.V6_AES.decrypt_block(response_iv) == block
    assert crypto.V6_AES.encrypt_block(block) == response_iv
    assert answer.random_xored_ivs == value(table, "RandomXoredIVs")
    random = value(table, "Random")
    assert crypto.xor(answer.random_xored_ivs, opened.decrypted_iv) == random
    assert answer.hash == value(table, "Hash") == crypto.sha256(random)
    assert answer.hwid == value(table, "HwId")
    assert answer.xored_ivs == opened.decrypted_iv
    key = value(table, "HMAC key")
    assert crypto.v6_hmac_key(answer.response.request_time) == key
    full = crypto.hmac_sha256(key, block + response_plain[:216])
    assert full == value(table, "HMAC-SHA256")
    assert answer.hmac == full[16:] == value(table, "HMAC field")
    assert framing.seal_response(answer.response, opened, hwid=answer.hwid, random=random,
                                 response_block=block) == response


def test_section_13_4_rpc_framing_prefixes(doc):
    """The first bytes PROTOCOL.md shows for request and response PDUs are what the capture carries."""
    text = section(doc, "13.4")
    framing_block = re.search(r"^request\s+(.*?)<payload>.*?^response\s+(.*?)<payload>", text, re.M | re.S)
    assert framing_block
    exchange = kms_exchanges(THIRD_PARTY / "vlmcsd_v6_ws2019dc_default.pcap")[0]
    for shown, raw in ((framing_block.group(1), exchange.client_pdu), (framing_block.group(2), exchange.host_pdu)):
        prefix = bytes.fromhex("".join(shown.split()))
        assert raw.startswith(prefix), (prefix.hex(), raw[:len(prefix)].hex())
