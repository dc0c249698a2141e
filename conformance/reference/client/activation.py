"""The reference KMS client's activation: one exchange through the exchange runner.

The runner (net.runner) owns the connection and net.outcomes verifies the answer as a Windows
client and vlmcs do (PROTOCOL.md C2-C5); the request comes from wire.requests.
"""

from __future__ import annotations

from conformance.net.outcomes import Activation, Unreachable
from conformance.net.runner import BindOptions, Runner
from conformance.wire.messages import KmsRequest

def activate(host: str, port: int, request: KmsRequest, options: BindOptions = BindOptions(),
             timeout: float = 10.0) -> Activation:
    """One full exchange on a new connection: bind, [alter_context], request, verify.
    A host that cannot be reached raises OSError (the callers' failover depends on it)."""
    result = Runner(host, port, timeout).activate(request, options)
    if isinstance(result.outcome, Unreachable):
        raise OSError(result.outcome.error)
    return result
