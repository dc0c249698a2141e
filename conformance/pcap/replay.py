"""Replay a capture's client PDUs against a target and compare its answers with the recorded ones.

Fields that must vary between hosts are tolerated (ePID, HwId, assoc_group, count);
integrity is re-verified rather than compared; everything else must match.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from conformance.net.outcomes import Closed, Silent, Unreachable
from conformance.net.runner import Session
from conformance.wire import epid as epid_mod
from conformance.wire import framing, ndr, rpc
from conformance.wire.exchange import Connection, Exchange, decode_kms
from conformance.wire.errors import DecodeError
from conformance.wire.messages import filetime_now

from .decode import decode_capture

SAME, DIFFERS, TOLERATED = "same", "DIFFERS", "tolerated"
# hosts legitimately differ here: ePID/HwId/assoc_group are their own, the count depends on their clients,
# and which transfer syntax a host accepts depends on its OS (PROTOCOL.md 2.4)
TOLERATED_FIELDS = {"epid", "hwid", "assoc_group", "count", "sec_addr", "results", "context"}


@dataclass
class Row:
    exchange: int
    field: str
    recorded: object
    replayed: object
    verdict: str


def refresh_request(pdu: rpc.Request, ndr64: bool) -> rpc.Request:
    """The same KMS request with a fresh request time and IV, re-sealed (V4 MAC recomputed)."""
    payload = ndr.decode_request_stub(pdu.stub, ndr64)
    opened = framing.open_request(payload, allow_minor=True)
    request = dataclasses.replace(opened.request, request_time=filetime_now())
    sealed = framing.seal_request(request, os.urandom(16))
    return dataclasses.replace(pdu, stub=ndr.encode_request_stub(sealed, ndr64), alloc_hint=None)


def onto_accepted_context(pdu: rpc.Request, ndr64: bool, state: Connection) -> tuple[rpc.Request, tuple | None]:
    """The request on a context the target accepted (re-marshalled for its syntax), if the recorded one was not."""
    if pdu.cont_id in state.contexts or not state.contexts:
        return pdu, None
    cont_id, target_ndr64 = next(iter(state.contexts.items()))
    try:
        payload = ndr.decode_request_stub(pdu.stub, ndr64)
    except DecodeError:
        return pdu, None  # a malformed recorded stub is replayed as it was
    moved = dataclasses.replace(pdu, cont_id=cont_id, stub=ndr.encode_request_stub(payload, target_ndr64),
                                alloc_hint=None)
    names = {False: "NDR32", True: "NDR64"}
    return moved, (f"{pdu.cont_id} ({names[ndr64]})", f"{cont_id} ({names[target_ndr64]})")


def _pdu_fields(pdu: rpc.Pdu | None) -> dict[str, object]:
    if pdu is None:
        return {"pdu": "no answer"}
    out: dict[str, object] = {"pdu": type(pdu).__name__, "call_id": pdu.header.call_id}
    if isinstance(pdu, rpc.BindAck):
        out.update(results=[(r.result, r.reason, str(r.transfer)) for r in pdu.results],
                   max_xmit=pdu.max_xmit, max_recv=pdu.max_recv, assoc_group=pdu.assoc_group, sec_addr=pdu.sec_addr)
    elif isinstance(pdu, rpc.Fault):
        out["status"] = f"0x{pdu.status:08X}"
    return out


def _kms_fields(ex: Exchange) -> dict[str, object]:
    if ex.response is not None:
        r = ex.response.response
        return {"version": f"{r.major}.{r.minor}", "cmid": str(r.cmid), "request_time_echo": r.request_time,
                "count": r.count, "activation_interval": r.activation_interval,
                "renewal_interval": r.renewal_interval, "epid": r.epid, "hwid": ex.response.hwid.hex(),
                "verified": ex.response.verified}
    if ex.hresult is not None:
        return {"hresult": f"0x{ex.hresult:08X}"}
    return {}


def compare(n: int, recorded: dict, replayed: dict, refreshed: bool) -> list[Row]:
    rows = []
    for key in dict.fromkeys([*recorded, *replayed]):
        a, b = recorded.get(key), replayed.get(key)
        if key == "request_time_echo" and refreshed:
            continue  # the refreshed request carries a new time by design
        if a == b:
            verdict = SAME
        elif key in TOLERATED_FIELDS:
            verdict = TOLERATED
        else:
            verdict = DIFFERS
        rows.append(Row(n, key, a, b, verdict))
    if replayed.get("epid"):
        try:
            epid_mod.Epid.parse(replayed["epid"])
            rows.append(Row(n, "epid well-formed", "yes", "yes", SAME))
        except DecodeError as exc:
            rows.append(Row(n, "epid well-formed", "yes", str(exc), DIFFERS))
    return rows


def replay(path: Path, host: str, port: int, refresh: bool = False, port_filter: int | None = None,
           timeout: float = 10.0) -> list[Row]:
    rows: list[Row] = []
    n = 0
    for decoded in decode_capture(path, port_filter):
        state = Connection()
        try:
            conn = Session(host, port, timeout)
        except OSError as exc:
            raise ConnectionError(exc.strerror or str(exc)) from None
        with conn:
            for original in decoded.exchanges:
                n += 1
                pdu = original.client
                if pdu is None:
                    continue
                remapped = None
                if isinstance(pdu, rpc.Request):
                    if refresh and original.request is not None:
                        pdu = refresh_request(pdu, original.ndr64)
                    pdu, remapped = onto_accepted_context(pdu, original.ndr64, state)
                outcome = conn.exchange(pdu.encode())
                answer = getattr(outcome, "pdu", None)
                if answer is None:
                    rows.append(Row(n, "pdu", _pdu_fields(original.host)["pdu"], outcome.describe(), DIFFERS))
                    if isinstance(outcome, (Closed, Silent, Unreachable)):
                        break
                    continue
                again = Exchange(pdu.encode(), answer.encode(), pdu, answer)
                if isinstance(pdu, rpc.Bind):
                    state.note_bind(pdu)
                    if isinstance(answer, rpc.BindAck):
                        state.note_bind_ack(answer)
                elif isinstance(pdu, rpc.Request):
                    decode_kms(again, state)
                if remapped:
                    rows.append(Row(n, "context", remapped[0], remapped[1], TOLERATED))
                rows += compare(n, _pdu_fields(original.host) | _kms_fields(original),
                                _pdu_fields(answer) | _kms_fields(again), refresh)
    return rows


def differences(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r.verdict == DIFFERS]
