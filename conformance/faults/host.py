"""The faulty reference host: the genuine host built with the faulty service, session and connection.

`faulty_host_thread(config, quirks)` is the one way to start one; the genuine host knows nothing of quirks.
"""

from __future__ import annotations

import asyncio
from typing import Iterable

from conformance.reference.host.config import HostConfig
from conformance.reference.host.rpc_session import Reply
from conformance.reference.host.server import HostThread, KmsConnection, ReferenceHost
from conformance.reference.host.service import Clock
from conformance.wire import rpc

from .quirks import Quirk
from .service import FaultyService
from .session import FaultySession


def _malformed(reply: Reply) -> bool:
    """A PDU or payload the host could not read (a version it refuses is not malformed: that is an answer)."""
    return reply.malformed or (reply.decision is not None and reply.decision.malformed)


class FaultyHost(ReferenceHost):
    def __init__(self, config: HostConfig, service: FaultyService):
        super().__init__(config, service, session=FaultySession, connection=FaultyConnection)
        self.quirks = service.quirks
        self.shared_request = b""  # shared-request-buffer's one slot

    def crash(self) -> None:
        """Stop listening and drop every connection, as a dead host would."""
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.close()


class FaultyConnection(KmsConnection):
    __slots__ = ()
    host: FaultyHost

    def _bad_frag_length(self, frag: int) -> None:
        super()._bad_frag_length(frag)
        if Quirk.CRASH_ON_MALFORMED in self.host.quirks:
            self.host.crash()

    def _handle(self, pdu: bytes) -> bool:
        host = self.host
        if Quirk.SHARED_REQUEST_BUFFER in host.quirks and rpc.peek_ptype(pdu) == rpc.PType.REQUEST:
            # a race on purpose: requests wait in one host-wide slot, and each answer is for whatever is there
            host.shared_request = pdu
            asyncio.get_running_loop().call_later(0.02, lambda: self.transport.is_closing()
                                                  or super(FaultyConnection, self)._handle(host.shared_request))
            return True
        return super()._handle(pdu)

    def _deliver(self, pdu: bytes, reply: Reply) -> bool:
        host = self.host
        if Quirk.CRASH_ON_MALFORMED in host.quirks and _malformed(reply):
            if host.on_pdu is not None:
                host.on_pdu(self.peer, pdu, reply)
            host.crash()
            return False
        return super()._deliver(pdu, reply)

    def _cut_by_eof(self) -> None:
        if Quirk.PROCESS_CUT_PDU in self.host.quirks and len(self.buffer) >= rpc.HEADER_SIZE:
            # as py-kms does: what arrived is taken for the whole PDU, whatever frag_length promised
            cut = bytearray(self.buffer)
            rpc.set_frag_length(cut, len(cut))
            self.buffer.clear()
            self._handle(bytes(cut))
        else:
            super()._cut_by_eof()


def faulty_host_thread(config: HostConfig, quirks: Iterable[str | Quirk], *, fixed_count: int | None = None,
                       loop: str = "auto") -> HostThread:
    """A reference host with `quirks` (slugs or members) on its own thread; fixed_count is fixed-count's answer."""
    service = FaultyService(config, quirks, fixed_count, clock=Clock())
    return HostThread(config, loop, service, host=FaultyHost)
