"""Scapy layers for KMS: scapy's own DCE/RPC v5 layers bound to TCP 1688, KMS layers on their stubs.

    from conformance.pcap import layers; layers.bind(); rdpcap(f)[5].show()

V4 payloads show every field; V5/V6 payloads show version, IV and ciphertext, and
`.decrypt()` returns the plaintext as a KMS base layer (same codec as the decoder).
"""

from __future__ import annotations

from scapy.fields import (ConditionalField, LEIntField, LELongField, LEShortField, StrLenField, UUIDField,
                          XLEIntField, XStrFixedLenField, XStrLenField)
from scapy.layers.dcerpc import DceRpc5, DceRpc5Request, DceRpc5Response
from scapy.layers.inet import TCP
from scapy.packet import Packet, Raw, bind_layers

from conformance.wire import crypto
from conformance.wire.layout import RESPONSE_TRAILER
from conformance.wire.messages import REQUEST_BASE_SIZE

KMS_PORT = 1688


def _le_uuid(name: str) -> UUIDField:
    return UUIDField(name, None, uuid_fmt=UUIDField.FORMAT_LE)


class Utf16Field(StrLenField):
    def i2repr(self, pkt, value):
        from conformance.wire.errors import DecodeError
        from conformance.wire.messages import decode_utf16z

        try:
            return repr(decode_utf16z(bytes(value or b""), self.name)[0])  # bytes after the NUL are not text
        except DecodeError:
            return repr(bytes(value or b""))


class KmsRequestBase(Packet):
    name = "KMS request base"
    fields_desc = [
        LEShortField("minor", 0), LEShortField("major", 6), LEIntField("vm", 0), LEIntField("license_status", 2),
        LEIntField("binding_expiration", 43200), _le_uuid("app_id"), _le_uuid("sku_id"), _le_uuid("kms_id"),
        _le_uuid("cmid"), LEIntField("n_policy", 25), LELongField("request_time", 0), _le_uuid("previous_cmid"),
        Utf16Field("workstation", b"", length_from=lambda p: 128),
    ]


class KmsResponseBase(Packet):
    name = "KMS response base"
    fields_desc = [
        LEShortField("minor", 0), LEShortField("major", 6), LEIntField("pid_size", None),
        Utf16Field("epid", b"", length_from=lambda p: p.pid_size), _le_uuid("cmid"),
        LELongField("request_time", 0), LEIntField("count", 0), LEIntField("activation_interval", 120),
        LEIntField("renewal_interval", 10080),
    ]


def _trailer_field(part) -> object:
    field = XStrFixedLenField(part.name, b"", part.size)
    if part.versions == (5, 6):
        return field
    return ConditionalField(field, lambda p, versions=part.versions: p.underlayer.major in versions)


class KmsV5V6Trailer(Packet):
    name = "KMS V5/V6 response trailer"
    fields_desc = [_trailer_field(part) for part in RESPONSE_TRAILER.parts]


class KmsV4Mac(Packet):
    name = "KMS V4 MAC"
    fields_desc = [XStrFixedLenField("mac", b"", 16)]


class KmsEncrypted(Packet):
    """A V5/V6 payload: clear version and IV, then AES-CBC ciphertext."""

    name = "KMS V5/V6 encrypted payload"
    fields_desc = [LEShortField("minor", 0), LEShortField("major", 6), XStrFixedLenField("iv", b"", 16),
                   XStrLenField("ciphertext", b"", length_from=lambda p: (len(p.original or b"") - 20) // 16 * 16)]

    def decrypt(self) -> Packet:
        cipher = crypto.V5_AES if self.major == 5 else crypto.V6_AES
        plain = cipher.cbc_decrypt(bytes(self.iv), bytes(self.ciphertext))
        body = crypto.pkcs7_unpad(plain) or plain
        if isinstance(self.underlayer, KmsRequestStub):
            return KmsRequestBase(body[:REQUEST_BASE_SIZE])
        return KmsResponseBase(body)


class _KmsPayloadMixin:
    def guess_payload_class(self, payload: bytes):
        if len(payload) < 4:
            return Raw
        major = int.from_bytes(payload[2:4], "little")
        if major in (5, 6):
            return KmsEncrypted
        if major == 4:
            return KmsRequestBase if isinstance(self, KmsRequestStub) else KmsResponseBase
        return Raw


class KmsRequestStub(_KmsPayloadMixin, Packet):
    """RequestActivation's NDR32 arguments; NDR64 stubs dissect as KmsRequestStub64."""

    name = "KMS RequestActivation (NDR32 request stub)"
    fields_desc = [LEIntField("request_size", None), LEIntField("max_count", None)]

    @classmethod
    def dispatch_hook(cls, _pkt=None, *args, **kargs):
        # NDR64: the second word is alignment padding and the conformance is a u64 (PROTOCOL.md 2.7)
        raw = bytes(_pkt or b"")
        if len(raw) >= 16 and raw[4:8] == bytes(4) and raw[8:12] == raw[0:4] and raw[12:16] == bytes(4):
            return KmsRequestStub64
        return KmsRequestStub

    def extract_padding(self, s: bytes):
        return s[: self.request_size or 0], s[self.request_size or 0 :]


class KmsRequestStub64(KmsRequestStub):
    name = "KMS RequestActivation (NDR64 request stub)"
    fields_desc = [LEIntField("request_size", None), LEIntField("pad", 0), LELongField("max_count", None)]


class KmsResponseStub(_KmsPayloadMixin, Packet):
    """NDR32 response: size, unique referent, conformance, payload, pad, HRESULT (or a NULL referent)."""

    name = "KMS RequestActivation (NDR32 response stub)"
    fields_desc = [
        LEIntField("response_size", None),
        XLEIntField("referent", 0x20000),
        ConditionalField(LEIntField("max_count", None), lambda p: p.referent),
        ConditionalField(XLEIntField("hresult", 0), lambda p: not p.referent),
    ]

    @classmethod
    def dispatch_hook(cls, _pkt=None, *args, **kargs):
        raw = bytes(_pkt or b"")
        if len(raw) >= 20 and raw[4:8] == bytes(4) and raw[8:16] in (bytes(8), (0x20000).to_bytes(8, "little")):
            return KmsResponseStub64
        return KmsResponseStub

    def extract_padding(self, s: bytes):
        size = self.response_size or 0
        return s[:size], s[size:]


class KmsResponseStub64(KmsResponseStub):
    name = "KMS RequestActivation (NDR64 response stub)"
    fields_desc = [
        LEIntField("response_size", None),
        LEIntField("pad", 0),
        XLEIntField("referent", 0x20000),
        LEIntField("referent_high", 0),
        ConditionalField(LELongField("max_count", None), lambda p: p.referent),
        ConditionalField(XLEIntField("hresult", 0), lambda p: not p.referent),
    ]


def bind(port: int = KMS_PORT) -> None:
    """Dissect TCP `port` as DCE/RPC carrying KMS (idempotent)."""
    bind_layers(TCP, DceRpc5, dport=port)
    bind_layers(TCP, DceRpc5, sport=port)
    bind_layers(DceRpc5Request, KmsRequestStub, opnum=0)
    bind_layers(DceRpc5Response, KmsResponseStub)
    bind_layers(KmsResponseBase, KmsV5V6Trailer, major=5)
    bind_layers(KmsResponseBase, KmsV5V6Trailer, major=6)
    bind_layers(KmsResponseBase, KmsV4Mac, major=4)
    bind_layers(KmsRequestBase, KmsV4Mac, major=4)


bind()
