"""Coverage-guided fuzzing of the parsers with atheris (libFuzzer).

    python -m conformance.fuzz.coverage TARGET [--seed-corpus DIR] [libFuzzer flags] [corpus dirs]
    python -m conformance.fuzz.coverage seed TARGET DIR

TARGET is one of rpc, ndr, framing, epid, exchange, pcap, session, or `all` (the
first input byte picks one of the others). `--seed-corpus DIR` writes PDUs,
stubs, payloads and ePIDs taken from the project's and the third-party captures
into DIR and fuzzes with it as the first corpus directory.

The contract: for any bytes, a parser returns an object or raises its documented
error (DecodeError; CaptureError for captures); the reference host's session
answers every PDU or closes. Anything else escaping - IndexError, struct.error,
OverflowError, a broken round trip - is a crash, and libFuzzer saves the input.

CONFORMANCE_FUZZ_STRICT=1 turns the documented errors into crashes too: that is
how the tests prove the harness reports what escapes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Callable

import atheris

# Only the project's modules: their branches are the coverage that matters, and the
# Rijndael rounds are straight-line code that would only slow every execution down.
with atheris.instrument_imports(include=["conformance"], exclude=["conformance.wire.rijndael"]):
    from conformance import catalog as catalog_mod
    from conformance.faults.service import FaultyService
    from conformance.faults.session import FaultySession
    from conformance.pcap import decode as pcap_decode
    from conformance.pcap.reader import CaptureError, TcpConnection, read_connections
    from conformance.reference.host.config import HostConfig
    from conformance.reference.host.rpc_session import RpcSession
    from conformance.reference.host.service import KmsService
    from conformance.wire import epid, framing, messages, ndr, rpc
    from conformance.wire.errors import DecodeError

STRICT = os.environ.get("CONFORMANCE_FUZZ_STRICT") == "1"
REPO = Path(__file__).resolve().parents[2]
CAPTURE_DIRS = (REPO / "captures" / "reference", REPO.parent / "shared" / "captures" / "third-party")
SERVER_PTYPES = {rpc.PType.BIND_ACK, rpc.PType.BIND_NAK, rpc.PType.ALTER_CONTEXT_RESP, rpc.PType.RESPONSE,
                 rpc.PType.FAULT}


class ContractViolation(AssertionError):
    """A parser returned, but what it returned breaks a guarantee it makes."""


def _expected(*errors: type[BaseException]) -> tuple[type[BaseException], ...]:
    return () if STRICT else errors


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise ContractViolation(what)


# --- targets: each takes the raw fuzz input ---

def fuzz_rpc(data: bytes) -> None:
    try:
        pdu = rpc.decode_pdu(data)
    except _expected(DecodeError):
        pdu = None
    if pdu is not None:
        again = pdu.encode()
        _check(rpc.decode_pdu(again) == pdu, f"{type(pdu).__name__} decodes differently once re-encoded")
        # every PDU keeps all its bytes except bind_nak, which drops what follows its version list
        if not isinstance(pdu, rpc.BindNak):
            _check(len(again) == len(data), f"{type(pdu).__name__} re-encodes to {len(again)} of {len(data)} bytes")
    try:
        pdus, rest = rpc.split_stream(data)
    except _expected(DecodeError):
        return
    _check(b"".join(pdus) + rest == data, "split_stream lost or invented bytes")
    _check(all(rpc.peek_frag_length(p) == len(p) for p in pdus), "a split PDU disagrees with its frag_length")
    _check(len(rest) < rpc.HEADER_SIZE or rpc.peek_frag_length(rest) > len(rest), "a whole PDU left in the rest")


def fuzz_ndr(data: bytes) -> None:
    if not data:
        return
    ndr64, stub = bool(data[0] & 1), data[1:]
    if data[0] & 2:
        try:
            body, code = ndr.decode_response_stub(stub, ndr64)
        except _expected(DecodeError):
            return
        again = ndr.encode_error_stub(code, ndr64) if body is None else ndr.encode_response_stub(body, ndr64, code)
        _check(ndr.decode_response_stub(again, ndr64) == (body, code), "response stub does not round-trip")
    else:
        try:
            payload = ndr.decode_request_stub(stub, ndr64)
        except _expected(DecodeError):
            return
        again = ndr.encode_request_stub(payload, ndr64)
        _check(ndr.decode_request_stub(again, ndr64) == payload, "request stub does not round-trip")


def fuzz_framing(data: bytes) -> None:
    if not data:
        return
    mode, rest = data[0] % 4, data[1:]
    try:
        if mode == 0:
            opened = framing.open_request(rest, allow_minor=bool(data[0] & 4))
            if opened.verified:
                sealed = framing.seal_request(opened.request, opened.iv or None)
                _check(rest[: len(sealed)] == sealed, "a verified request does not re-seal to its own bytes")
        elif mode == 1:
            framing.open_response(rest[16:], request_iv=rest[:16].ljust(16, b"\0"))
        elif mode == 2:
            framing.open_response(rest)
        else:
            _messages(rest)
    except _expected(DecodeError):
        return


def _messages(data: bytes) -> None:
    try:
        request = messages.KmsRequest.decode(data)
    except _expected(DecodeError):
        pass
    else:
        _check(request.encode() == data[: messages.REQUEST_BASE_SIZE], "request base does not re-encode")
    response, used = messages.KmsResponse.decode(data)
    _check(response.encode() == data[:used], "response base does not re-encode")


CATALOG = catalog_mod.load()
KMS_ID = next(iter(sorted(CATALOG.default_host_keys()[0].activates)))


def fuzz_epid(data: bytes) -> None:
    if not data:
        return
    mode, rest = min(data[0] & 3, 2), data[1:]  # bit 2: validate against a KMS id too
    if mode == 0:
        text = rest[: len(rest) // 2 * 2].decode("utf-16-le", "surrogatepass")  # what a response carries
    elif mode == 1:
        text = rest.decode("latin-1")
    else:
        text, formatted = _structured_epid(rest)
    try:
        parsed = epid.Epid.parse(text)
    except _expected(DecodeError):
        parsed = None
    if mode == 2:
        _check(parsed is not None, f"well-formed ePID {text!r} rejected")
    if parsed is not None:
        parsed.activation_date()
        if mode == 2 and formatted:
            _check(epid.Epid.parse(str(parsed)) == parsed, f"{text!r} does not survive str() and parse()")
    problems = epid.validate(text, CATALOG, KMS_ID if data[0] & 4 else None)
    _check(isinstance(problems, list) and all(isinstance(p, str) for p in problems), "validate() returned non-text")


def _structured_epid(data: bytes) -> tuple[str, bool]:
    """An ePID with every field in its pattern's range, so the fuzzer spends its time on values, not syntax."""
    fdp = atheris.FuzzedDataProvider(data)

    def n(low: int, high: int) -> int:
        # a field's extremes are where parsers and date arithmetic break, so they come up often
        pick = fdp.ConsumeIntInRange(0, 7)
        return low if pick == 0 else high if pick == 1 else fdp.ConsumeIntInRange(low, high)

    lcid_width, build_width = n(4, 5), n(4, 5)
    lcid, build = n(0, 10**lcid_width - 1), n(0, 10**build_width - 1)
    text = (f"{n(0, 99999):05d}-{n(0, 99999):05d}-{n(0, 999):03d}-{n(0, 999999):06d}-{n(0, 99):02d}"
            f"-{lcid:0{lcid_width}d}-{build:0{build_width}d}.0000-{n(0, 999):03d}{n(0, 9999):04d}")
    # str() prints LCID and build without padding, so only 4-digit-or-wider values come back unchanged
    return text, lcid >= 1000 and build >= 1000


def _connection(client: bytes, host: bytes) -> TcpConnection:
    return TcpConnection(("192.0.2.1", 49152), ("192.0.2.2", 1688), client, host, 0.0)


def fuzz_exchange(data: bytes) -> None:
    """Two PDU streams (client length in the first two bytes) through the decoder behind `kmsconf decode`."""
    split = int.from_bytes(data[:2], "little")
    client, host = data[2 : 2 + split], data[2 + split :]
    try:
        decoded = pcap_decode.decode_tcp(_connection(client, host))
    except _expected(CaptureError):
        return
    n_client = len(rpc.split_stream(client)[0])
    _check(len(decoded.exchanges) == n_client, "an exchange per client PDU")
    json.dumps(pcap_decode.exchanges_json([decoded]))


class _CaptureFile:
    """One reusable file for the pcap target: the reader takes a path, not bytes."""

    def __init__(self) -> None:
        if hasattr(os, "memfd_create"):
            self.fd = os.memfd_create("fuzz.pcap")
            self.path = Path(f"/proc/self/fd/{self.fd}")
        else:
            self.fd, name = tempfile.mkstemp(suffix=".pcap")
            self.path = Path(name)

    def write(self, data: bytes) -> Path:
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)
        return self.path


_capture_file: _CaptureFile | None = None


def fuzz_pcap(data: bytes) -> None:
    global _capture_file
    _capture_file = _capture_file or _CaptureFile()
    try:
        decoded = pcap_decode.decode_capture(_capture_file.write(data))
    except _expected(CaptureError):
        return
    json.dumps(pcap_decode.exchanges_json(decoded))


# (host settings, quirks): the genuine host, and faulty ones whose quirks reach paths it refuses early
_SESSION_CONFIGS = (
    ({}, ()),
    ({"ndr64": False}, ()),
    ({}, ("ignore-time", "accept-bad-version", "process-unbound-context", "ignore-key-group",
          "accept-foreign-interface", "ignore-opnum")),
    ({}, ("ignore-time", "accept-all-syntaxes", "no-alter-context", "require-mpx", "reject-ndr32",
          "no-call-id-echo", "bad-alloc-hint", "zero-assoc-group")),
)
_services: dict[int, KmsService] = {}


def fuzz_session(data: bytes) -> None:
    """A connection's bytes, cut into PDUs as host.py does, each through RpcSession.handle: answer or close."""
    if not data:
        return
    index = data[0] % len(_SESSION_CONFIGS)
    settings, quirks = _SESSION_CONFIGS[index]
    if index not in _services:
        config = HostConfig(port=1688, **settings)
        _services[index] = FaultyService(config, quirks) if quirks else KmsService(config)
    service = _services[index]
    session = (FaultySession if quirks else RpcSession)(service, service.config)
    stream, pos = data[1:], 0
    while len(stream) - pos >= rpc.HEADER_SIZE:
        frag = rpc.peek_frag_length(stream[pos:])
        if frag < rpc.HEADER_SIZE or frag > service.config.max_pdu or len(stream) - pos < frag:
            return  # the host closes before handing such a PDU to the session
        pdu, pos = stream[pos : pos + frag], pos + frag
        reply = session.handle(pdu)
        _check(reply.data is not None or reply.close, "a PDU neither answered nor closed")
        if reply.data is not None:
            answer = rpc.decode_pdu(reply.data)
            _check(answer.header.ptype in SERVER_PTYPES, f"the host answered with PDU type {answer.header.ptype}")
            _check_activation(session, pdu, answer, reply)
        if reply.close:
            return


def _check_activation(session: RpcSession, pdu: bytes, answer: rpc.Pdu, reply) -> None:
    """A success answer from the reference host must verify against the request it answers."""
    decision = reply.decision
    if decision is None or decision.payload is None or not isinstance(answer, rpc.Response):
        return
    ndr64 = session.contexts.get(rpc.decode_pdu(pdu).cont_id, False)
    body, code = ndr.decode_response_stub(answer.stub, ndr64)
    _check(body == decision.payload and code == 0, "the response stub does not carry the service's answer")
    opened = framing.open_response(body, decision.opened.iv)
    _check(opened.verified, f"the reference host's response fails {opened.failed_checks()}")


TARGETS: dict[str, Callable[[bytes], None]] = {
    "rpc": fuzz_rpc,
    "ndr": fuzz_ndr,
    "framing": fuzz_framing,
    "epid": fuzz_epid,
    "exchange": fuzz_exchange,
    "pcap": fuzz_pcap,
    "session": fuzz_session,
}
_ORDER = tuple(TARGETS)


def fuzz_all(data: bytes) -> None:
    if data:
        TARGETS[_ORDER[data[0] % len(_ORDER)]](data[1:])


TARGETS["all"] = fuzz_all


# --- seed corpus from captures ---

def capture_files() -> list[Path]:
    return [p for d in CAPTURE_DIRS if d.is_dir() for p in sorted(d.glob("*.pcap"))]


def seeds(target: str) -> list[bytes]:
    if target == "all":
        return [bytes([_ORDER.index(name)]) + s for name in _ORDER for s in seeds(name)]
    out: list[bytes] = []
    for path in capture_files():
        if target == "pcap":
            out.append(path.read_bytes())
            continue
        for conn in read_connections(path):
            out.extend(_connection_seeds(target, conn))
    return list(dict.fromkeys(out))


def _connection_seeds(target: str, conn: TcpConnection) -> list[bytes]:
    if target == "exchange":
        return [len(conn.client_stream).to_bytes(2, "little") + conn.client_stream + conn.host_stream]
    if target == "session":
        return [bytes([i]) + conn.client_stream for i in range(len(_SESSION_CONFIGS))]
    client, _ = rpc.split_stream(conn.client_stream)
    host, _ = rpc.split_stream(conn.host_stream)
    if target == "rpc":
        return client + host
    out = []
    for ex in pcap_decode.decode_tcp(conn).exchanges:
        flag = int(ex.ndr64)
        if target == "ndr" and isinstance(ex.client, rpc.Request):
            out.append(bytes([flag]) + ex.client.stub)
            if isinstance(ex.host, rpc.Response):
                out.append(bytes([flag | 2]) + ex.host.stub)
        if target == "framing" and ex.request is not None:
            payload = ndr.decode_request_stub(ex.client.stub, ex.ndr64)
            out += [bytes([0]) + payload, bytes([3]) + ex.request.request.encode()]
            body = ndr.decode_response_stub(ex.host.stub, ex.ndr64)[0] if isinstance(ex.host, rpc.Response) else None
            if body is not None:
                out += [bytes([1]) + ex.request.iv.ljust(16, b"\0") + body, bytes([2]) + body]
            if ex.response is not None:
                out.append(bytes([3]) + ex.response.response.encode())
        if target == "epid" and ex.response is not None:
            text = ex.response.response.epid
            out += [bytes([0]) + text.encode("utf-16-le"), bytes([5]) + text.encode("latin-1", "replace")]
    return out


def write_seeds(target: str, directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    found = seeds(target)
    for data in found:
        (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)
    return len(found)


def main(argv: list[str]) -> int:
    usage = (f"usage: python -m conformance.fuzz.coverage TARGET [--seed-corpus DIR] [libFuzzer flags] [corpus dirs]\n"
             f"       python -m conformance.fuzz.coverage seed TARGET DIR\nTARGET: {', '.join(TARGETS)}")
    if len(argv) >= 2 and argv[1] == "seed":
        if len(argv) != 4 or argv[2] not in TARGETS:
            print(usage, file=sys.stderr)
            return 2
        print(f"{write_seeds(argv[2], Path(argv[3]))} seeds for {argv[2]} in {argv[3]}")
        return 0
    if len(argv) < 2 or argv[1] not in TARGETS:
        print(usage, file=sys.stderr)
        return 2
    target, rest = argv[1], argv[2:]
    fuzzer_args, seed_dir = [], None
    while rest:
        arg = rest.pop(0)
        if arg == "--seed-corpus" and rest:
            seed_dir = rest.pop(0)
        elif arg.startswith("--seed-corpus="):
            seed_dir = arg.split("=", 1)[1]
        else:
            fuzzer_args.append(arg)
    if seed_dir is not None:
        write_seeds(target, Path(seed_dir))
        # the first corpus directory is where libFuzzer keeps what it finds, so the seeds go first
        fuzzer_args = [a for a in fuzzer_args if a != seed_dir]
        fuzzer_args.insert(next((i for i, a in enumerate(fuzzer_args) if not a.startswith("-")), len(fuzzer_args)),
                           seed_dir)
    if not any(a.startswith("-timeout=") for a in fuzzer_args):
        fuzzer_args.insert(0, "-timeout=10")  # a parser stuck for 10 s on one input is a hang: a crash
    # libFuzzer runs argv[0] through the shell for -minimize_crash, -fork and -jobs: make it this command
    command = f"{shlex.quote(sys.executable)} -m conformance.fuzz.coverage {target}"
    atheris.Setup([command] + fuzzer_args, TARGETS[target])
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
