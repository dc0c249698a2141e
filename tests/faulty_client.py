"""A KMS client that breaks one rule on purpose: `python faulty_client.py FAULT HOST PORT`.

Used to prove each KMS-CLI clause fails when a client breaks it.
"""

import dataclasses
import sys
import uuid

from conformance import catalog
from conformance.net.runner import BindOptions, Session
from conformance.wire.requests import build_request
from conformance.wire import framing
from conformance.wire.messages import filetime_now

EDITION = "Windows Server 2019 Datacenter"  # V6, N = 5


def main(fault: str, host: str, port: int) -> None:
    edition = catalog.load().edition(EDITION)
    request = build_request(edition, workstation="faulty.client")
    changes = {
        "wrong-version": {"major": 5},
        "wrong-n": {"n_policy": 25},
        "wrong-kms-id": {"kms_id": uuid.UUID("7fde5219-fbfa-484a-82c9-34d1ad53e856")},
        "zero-cmid": {"cmid": uuid.UUID(int=0)},
        "old-time": {"request_time": filetime_now() - 5 * 3600 * 10**7},
        "bad-status": {"license_status": 9},
        "empty-workstation": {"workstation": ""},
    }
    if fault in changes:
        request = dataclasses.replace(request, **changes[fault])
    payload = framing.seal_request(request)
    if fault == "version-7":  # a version no product has (vlmcs -K 7.0): the host cannot open it
        payload = payload[:2] + (7).to_bytes(2, "little") + payload[4:]
    if fault == "bad-padding":
        # re-encrypt with a different final padding block so decryption succeeds but padding is wrong
        from conformance.wire import crypto

        plain = request.encode() + b"\x05" * 4
        payload = payload[:20] + crypto.V6_AES.cbc_encrypt(payload[4:20], plain)
    with Session(host, port) as conn:
        cont_id, ndr64 = conn.negotiate(BindOptions())
        if fault == "opnum":
            # the broken request, then a valid one: the host records both, so every other client clause runs
            conn.request(payload, cont_id, ndr64, opnum=3)
            conn.request_activation(dataclasses.replace(request, cmid=uuid.uuid4()), cont_id, ndr64)
            return
        conn.request_activation(request, cont_id, ndr64, payload)
        if fault == "shared-cmid":
            conn.request_activation(dataclasses.replace(request, workstation="another.machine"), cont_id, ndr64)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
