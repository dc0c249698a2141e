"""An asyncio load generator: many concurrent KMS activations with pre-sealed requests (bench and load tests)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from conformance import catalog
from conformance.reference.client import BindOptions, build_request
from conformance.wire import framing, ndr, rpc

BIND = rpc.Bind(BindOptions(ndr64=False, btfn=False).contexts(),
                rpc.Header(rpc.PType.BIND, rpc.FIRST_LAST | rpc.PFC_CONC_MPX, 2)).encode()


def request_pdu(product: str, cmid: uuid.UUID, n_policy: int | None = None) -> bytes:
    fields = {} if n_policy is None else {"n_policy": n_policy}
    request = build_request(catalog.load().edition(product), cmid=cmid, workstation="load.test", **fields)
    stub = ndr.encode_request_stub(framing.seal_request(request))
    return rpc.Request(stub, rpc.Header(rpc.PType.REQUEST, rpc.FIRST_LAST, 2)).encode()


async def _read_pdu(reader: asyncio.StreamReader) -> bytes:
    header = await reader.readexactly(rpc.HEADER_SIZE)
    return header + await reader.readexactly(rpc.peek_frag_length(header) - rpc.HEADER_SIZE)


@dataclass
class LoadResult:
    answered: int = 0
    failed: int = 0
    last_count: int = 0


async def _one_connection(host: str, port: int, requests: list[bytes], result: LoadResult) -> None:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        result.failed += len(requests)
        return
    try:
        writer.write(BIND)
        await _read_pdu(reader)
        for pdu in requests:
            writer.write(pdu)
            reply = rpc.decode_pdu(await _read_pdu(reader))
            body, code = ndr.decode_response_stub(reply.stub)
            if body is None:
                result.failed += 1
            else:
                result.answered += 1
                result.last_count = framing.open_response(body).response.count
    except (OSError, asyncio.IncompleteReadError):
        result.failed += 1
    finally:
        writer.close()


async def run(host: str, port: int, batches: list[list[bytes]], concurrency: int) -> LoadResult:
    """Each batch goes over one connection; at most `concurrency` connections at once."""
    result = LoadResult()
    gate = asyncio.Semaphore(concurrency)

    async def guarded(batch: list[bytes]) -> None:
        async with gate:
            await _one_connection(host, port, batch, result)

    await asyncio.gather(*(guarded(b) for b in batches))
    return result
