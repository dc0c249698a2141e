"""The reference KMS client: requests for catalog editions, activated through the exchange runner.

The runner (net.runner) owns the connection and net.outcomes verifies the answer as a Windows
client and vlmcs do (PROTOCOL.md C2-C5); this module adds what a client chooses: the request.
"""

from __future__ import annotations

import socket
import uuid
from typing import Any

from conformance.net.outcomes import Activation, Unreachable
from conformance.net.runner import BindOptions, Runner
from conformance.wire.messages import KmsRequest, filetime_now

__all__ = ["Activation", "BindOptions", "activate", "build_request"]


def build_request(edition, *, cmid: uuid.UUID | None = None, workstation: str | None = None,
                  protocol: int | None = None, **fields: Any) -> KmsRequest:
    """A request for a catalog edition with fresh CMID and current time; any field can be overridden."""
    values: dict[str, Any] = {
        "app_id": edition.app_id,
        "sku_id": edition.sku_id,
        "kms_id": edition.kms_id,
        "cmid": cmid or uuid.uuid4(),
        "n_policy": edition.n_policy,
        "request_time": filetime_now(),
        "workstation": workstation if workstation is not None else socket.gethostname()[:63],
        "major": protocol or edition.protocol,
    }
    values.update(fields)
    return KmsRequest(**values)


def activate(host: str, port: int, request: KmsRequest, options: BindOptions = BindOptions(),
             timeout: float = 10.0) -> Activation:
    """One full exchange on a new connection: bind, [alter_context], request, verify.
    A host that cannot be reached raises OSError (the callers' failover depends on it)."""
    result = Runner(host, port, timeout).activate(request, options)
    if isinstance(result.outcome, Unreachable):
        raise OSError(result.outcome.error)
    return result
