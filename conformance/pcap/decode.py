"""Captures to decoded KMS exchanges: the engine behind `kmsconf decode` and replay."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from conformance.wire import rpc
from conformance.wire.exchange import Exchange, decode_connection
from conformance.wire.errors import DecodeError

from .reader import CaptureError, TcpConnection, read_connections


@dataclass
class DecodedConnection:
    tcp: TcpConnection
    exchanges: list[Exchange]  # every client PDU with its answer (binds included)
    trailing_client_bytes: int
    trailing_host_bytes: int

    @property
    def kms(self) -> list[Exchange]:
        return [e for e in self.exchanges if e.is_kms]


def decode_tcp(conn: TcpConnection) -> DecodedConnection:
    try:
        client, rest_c = rpc.split_stream(conn.client_stream)
        host, rest_h = rpc.split_stream(conn.host_stream)
    except DecodeError as exc:
        raise CaptureError(f"connection {conn.client} -> {conn.host}: {exc}") from None
    return DecodedConnection(conn, decode_connection(client, host), len(rest_c), len(rest_h))


def decode_capture(path: Path, port: int | None = None) -> list[DecodedConnection]:
    decoded = [decode_tcp(c) for c in read_connections(path, port)]
    if not any(d.kms for d in decoded):
        where = f" on port {port}" if port is not None else ""
        raise CaptureError(f"{path}: no KMS traffic found{where} (no DCE/RPC request on any TCP connection)")
    return decoded


def named(item: dict) -> dict:
    """The decoded fields with the catalog's names beside the GUIDs, and the host key an ePID names."""
    from conformance import catalog as catalog_mod
    from conformance.wire.epid import keys_named

    catalog = catalog_mod.load()
    request, response = item.get("request") or {}, item.get("response") or {}
    if "sku_id" in request:
        edition = catalog.edition_by_sku(uuid.UUID(request["sku_id"]))
        kms = catalog.kms_id(uuid.UUID(request["kms_id"]))
        app = catalog.applications.get(uuid.UUID(request["app_id"]))
        names = {"app_id": ("app_name", app), "sku_id": ("sku_name", edition), "kms_id": ("kms_name", kms)}
        item["request"] = _beside(request, {k: (n, found.name if found else "(not in the catalog)")
                                            for k, (n, found) in names.items()})
    if "epid" in response:
        keys = " / ".join(k.name for k in keys_named(response["epid"], catalog)) or "(no host key of the catalog)"
        item["response"] = _beside(response, {"epid": ("epid_key", keys)})
    return item


def _beside(fields: dict, names: dict[str, tuple[str, str]]) -> dict:
    """`fields` with each name right after the field it names."""
    out = {}
    for key, value in fields.items():
        out[key] = value
        if key in names:
            out[names[key][0]] = names[key][1]
    return out


def exchanges_json(decoded: list[DecodedConnection]) -> list[dict]:
    out = []
    for conn in decoded:
        for ex in conn.kms:
            item = named(ex.to_json())
            item["client"] = f"{conn.tcp.client[0]}:{conn.tcp.client[1]}"
            item["host"] = f"{conn.tcp.host[0]}:{conn.tcp.host[1]}"
            out.append(item)
    return out


def describe_transcript(transcript: list[tuple[str, bytes]]) -> list[str]:
    """One line per KMS exchange of a check's transcript: the decoded fields that verdicts turn on."""
    client = [data for side, data in transcript if side == "client"]
    host = [data for side, data in transcript if side == "host"]
    lines = []
    for n, ex in enumerate(decode_connection(client, host), 1):
        parts = []
        if ex.client is not None and not ex.is_kms:
            parts.append(f"{type(ex.client).__name__} call_id {ex.client.header.call_id}")
        if ex.request is not None:
            r = ex.request.request
            parts.append(f"request V{r.major}.{r.minor} sku {r.sku_id} cmid {r.cmid} N {r.n_policy}")
        if ex.response is not None:
            r = ex.response.response
            failed = ex.response.failed_checks()
            parts.append(f"response V{r.major}.{r.minor} count {r.count} epid {r.epid}"
                         + (f" FAILED {', '.join(failed)}" if failed else " (checks pass)"))
        elif ex.hresult is not None:
            parts.append(f"refusal 0x{ex.hresult:08X}")
        elif ex.host is not None:
            parts.append(f"answer {type(ex.host).__name__}")
        elif ex.host_pdu is None:
            parts.append("no answer")
        parts += ex.errors
        lines.append(f"{n}: " + "; ".join(parts))
    return lines
