"""Field-aware mutations of one KMS exchange (bind + request), as hypothesis strategies.

A mutation is data: which field, and the value or operation. `apply()` turns the
seed exchange into the (bind, request) byte strings to send, so a finding can be
written down, replayed and shrunk.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import struct
import time
from dataclasses import dataclass

from hypothesis import strategies as st

from conformance import catalog
from conformance.net.runner import NDR32_BIND
from conformance.wire.requests import build_request
from conformance.wire import crypto, framing, ndr, rpc
from conformance.wire.layout import IV
from conformance.wire.messages import KmsRequest, filetime_now

BOUNDARY_U8 = (0, 1, 0x7F, 0x80, 0xFF)
BOUNDARY_U16 = (0, 1, 0x10, 0x7FFF, 0x8000, 0xFFFF)
BOUNDARY_U32 = (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
RESEAL_SECONDS = 600.0


@dataclass(frozen=True)
class Mutation:
    target: str  # "bind" | "request" | "payload" | "kms" | "bytes"
    field: str
    value: object = None

    def describe(self) -> str:
        shown = self.value.hex() if isinstance(self.value, bytes) else self.value
        return f"{self.target}.{self.field}={shown}"

    @property
    def in_bind(self) -> bool:
        """It changes the bind (else the request) of the exchange."""
        return self.target == "bind" or (self.target == "bytes" and self.field.startswith("bind."))


@dataclass
class Seed:
    """A valid exchange to mutate: NDR32 bind and its request (of the request's protocol version).

    The request is sealed once (a fixed IV and request time, renewed every few minutes so a host's 4-hour
    window never refuses it): every input made from the seed then differs from the standard PDUs only where
    it was mutated, which is what a finding's size counts and what the minimiser puts back."""

    request: KmsRequest
    _sealed: tuple[float, KmsRequest, bytes, bytes] | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def protocol(self) -> int:
        return self.request.major

    def sealed(self) -> tuple[KmsRequest, bytes]:
        """The request with its request time, and its payload as sent."""
        if self._sealed is None or time.monotonic() - self._sealed[0] > RESEAL_SECONDS:
            request = dataclasses.replace(self.request, request_time=filetime_now())
            payload = framing.seal_request(request, os.urandom(16))
            self._sealed = (time.monotonic(), request, payload, _request_pdu(payload))
        return self._sealed[1], self._sealed[2]

    def request_pdu(self, payload: bytes) -> bytes:
        """The request PDU carrying `payload` (the seed's own is built once: most inputs send it)."""
        return self._sealed[3] if self._sealed is not None and payload is self._sealed[2] else _request_pdu(payload)

    def standard(self) -> tuple[bytes, bytes]:
        """The unmutated bind and request PDUs (what the steps of an input are compared with)."""
        return apply(self, Mutation("none", "none"))

    @classmethod
    def default(cls, protocol: int = 6) -> "Seed":
        name = {4: "Windows 7 Enterprise", 5: "Windows 8 Enterprise", 6: "Windows Server 2019 Datacenter"}[protocol]
        return cls(build_request(catalog.load().edition(name), workstation="fuzz.example.test", protocol=protocol))


# Header and body fields per PDU, for "set this field to that value": the header's and the request head's from
# rpc's one description; of drep only its first byte (integer and character representation) is varied.
HEADER_FIELDS = {("drep0" if name == "drep" else name): ((offset, "B") if name == "drep" else (offset, code))
                 for name, (offset, code) in rpc.HEADER_FIELDS.items()}
BIND_FIELDS = {"max_xmit": (16, "H"), "max_recv": (18, "H"), "assoc_group": (20, "I"), "n_context": (24, "B"),
               "cont_id": (28, "H"), "n_transfer": (30, "B"), "if_major": (48, "H"), "if_minor": (50, "H"),
               "transfer_version": (68, "I")}
_STUB = rpc.HEADER_SIZE + rpc.REQUEST_HEAD.size  # the NDR32 stub's conformance fields
REQUEST_FIELDS = {**rpc.REQUEST_FIELDS, "request_size": (_STUB, "I"), "max_count": (_STUB + 4, "I")}
KMS_FIELDS = ("major", "minor", "vm", "license_status", "binding_expiration", "n_policy", "request_time",
              "workstation", "kms_id", "app_id")


def _set(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    size = struct.calcsize("<" + fmt)
    if offset + size > len(data):
        return data
    value &= (1 << (8 * size)) - 1
    return data[:offset] + struct.pack("<" + fmt, value) + data[offset + size :]


def _values(fmt: str) -> st.SearchStrategy[int]:
    bounds = {"B": BOUNDARY_U8, "H": BOUNDARY_U16, "I": BOUNDARY_U32}[fmt]
    bits = {"B": 8, "H": 16, "I": 32}[fmt]
    return st.one_of(st.sampled_from(bounds), st.integers(0, (1 << bits) - 1))


def _field_mutations(target: str, fields: dict[str, tuple[int, str]]) -> st.SearchStrategy[Mutation]:
    # one static branch per field: flatmap would build a new strategy on every draw (most of the draw's cost)
    return st.one_of(*(_values(fmt).map(functools.partial(Mutation, target, name))
                       for name, (_, fmt) in sorted(fields.items())))


def mutations() -> st.SearchStrategy[Mutation]:
    header = st.one_of(_field_mutations("bind", HEADER_FIELDS), _field_mutations("request", HEADER_FIELDS))
    bind = _field_mutations("bind", BIND_FIELDS)
    request = _field_mutations("request", REQUEST_FIELDS)
    kms_numbers = {f: (0, "H" if f in ("major", "minor") else "I")
                   for f in ("major", "minor", "vm", "license_status", "binding_expiration", "n_policy")}
    kms = st.one_of(
        _field_mutations("kms", kms_numbers),
        st.integers(0, 2**64 - 1).map(lambda v: Mutation("kms", "request_time", v)),
        st.text(min_size=0, max_size=63).map(lambda v: Mutation("kms", "workstation", v)),
        # the longest names whose characters grow in UTF-8 (2, 3 bytes each): a host that logs the name
        # converts it into a buffer sized for fewer bytes (vlmcsd's logRequest did)
        st.text(st.characters(min_codepoint=0x80, max_codepoint=0xFFFF, exclude_categories=("Cs",)),
                min_size=48, max_size=63).map(lambda v: Mutation("kms", "workstation", v)),
        st.uuids().map(lambda v: Mutation("kms", "kms_id", v)),
        st.uuids().map(lambda v: Mutation("kms", "app_id", v)),
    )
    payload = st.one_of(
        st.integers(0, 259 * 8).map(lambda bit: Mutation("payload", "bitflip", bit)),  # inside the ciphertext
        st.integers(0, 259).map(lambda n: Mutation("payload", "truncate", n)),
        st.integers(1, 4096).map(lambda n: Mutation("payload", "oversize", n)),
        st.sampled_from([b"\x00" * 4, b"\x05" * 4, b"\x04\x04\x04\x05"]).map(lambda p: Mutation("payload", "padding", p)),
    )
    raw = st.one_of(
        st.tuples(st.sampled_from(["bind", "request"]), st.integers(0, 400)).map(
            lambda t: Mutation("bytes", f"{t[0]}.truncate", t[1])),
        st.tuples(st.sampled_from(["bind", "request"]), st.integers(0, 400 * 8)).map(
            lambda t: Mutation("bytes", f"{t[0]}.bitflip", t[1])),
        st.binary(min_size=1, max_size=64).map(lambda b: Mutation("bytes", "garbage", b)),
    )
    return st.one_of(header, bind, request, kms, payload, raw)


def _kms_changed(request: KmsRequest, mutation: Mutation) -> KmsRequest:
    if mutation.field == "workstation":
        return dataclasses.replace(request, workstation=mutation.value[:63])
    return dataclasses.replace(request, **{mutation.field: mutation.value})


def _request_pdu(payload: bytes) -> bytes:
    return rpc.Request(ndr.encode_request_stub(payload), rpc.Header(rpc.PType.REQUEST, rpc.FIRST_LAST, 2)).encode()


def apply(seed: Seed, mutation: Mutation) -> tuple[bytes, bytes]:
    """(bind bytes, request bytes) with the mutation applied; KMS-field mutations are re-encrypted."""
    bind = NDR32_BIND
    request, payload = seed.sealed()
    if mutation.target == "kms":
        try:  # re-sealed with the seed's IV: the ciphertext changes from the changed block on, not all of it
            payload = framing.seal_request(_kms_changed(request, mutation), bytes(payload[IV]) or None)
        except (ValueError, struct.error, UnicodeEncodeError):
            pass  # a value the encoder refuses (e.g. a lone surrogate): the seed goes unchanged
    if mutation.target == "payload":
        if mutation.field == "bitflip":
            bit = mutation.value % (len(payload) * 8)
            payload = payload[: bit // 8] + bytes([payload[bit // 8] ^ (1 << bit % 8)]) + payload[bit // 8 + 1 :]
        elif mutation.field == "truncate":
            payload = payload[: mutation.value]
        elif mutation.field == "oversize":
            payload = payload + os.urandom(mutation.value)
        elif mutation.field == "padding" and request.major in (5, 6):
            cipher = crypto.V5_AES if request.major == 5 else crypto.V6_AES
            payload = payload[:IV.stop] + cipher.cbc_encrypt(payload[IV], request.encode() + mutation.value)
    req = seed.request_pdu(payload)
    if mutation.target in ("bind", "request") and mutation.field in HEADER_FIELDS:
        offset, fmt = HEADER_FIELDS[mutation.field]
        if mutation.target == "bind":
            bind = _set(bind, offset, fmt, mutation.value)
        else:
            req = _set(req, offset, fmt, mutation.value)
    elif mutation.target == "bind":
        bind = _set(bind, *BIND_FIELDS[mutation.field], mutation.value)
    elif mutation.target == "request":
        req = _set(req, *REQUEST_FIELDS[mutation.field], mutation.value)
    elif mutation.target == "bytes":
        if mutation.field == "garbage":
            req = mutation.value
        else:
            which, op = mutation.field.split(".")
            data = bind if which == "bind" else req
            if op == "truncate":
                data = data[: mutation.value]
            else:
                bit = mutation.value % (len(data) * 8)
                data = data[: bit // 8] + bytes([data[bit // 8] ^ (1 << bit % 8)]) + data[bit // 8 + 1 :]
            bind, req = (data, req) if which == "bind" else (bind, data)
    return bind, req
