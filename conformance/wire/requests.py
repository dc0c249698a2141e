"""A KMS request for a catalog edition: the one request builder of the suite, the fuzzer, the captures and
the reference client (the judge builds its own requests; it does not borrow the client's)."""

from __future__ import annotations

import socket
import uuid
from typing import Any

from .messages import KmsRequest, filetime_now


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
