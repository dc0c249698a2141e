"""Stateful inputs: an explicit grammar of PDU sequences, drawn by hypothesis.

Where a single mutation changes one exchange (bind, request), a sequence plays with the RPC state a host
keeps per connection: bind, alter_context and request in any order, several requests on one connection,
requests on a context that was never accepted (or before any bind), with another opnum or the other
transfer syntax, and up to three connections interleaved. Any step may instead be one PDU of a mutated
exchange (`mutators`). A sequence is data; `render` makes the program to send from the campaign's seed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from hypothesis import strategies as st

from conformance.wire import ndr, rpc

from .mutators import Mutation, Seed, apply, mutations
from .program import Program, Step

CONNECTIONS = 3
MAX_ACTIONS = 8
FOREIGN_INTERFACE = uuid.UUID("12345778-1234-abcd-ef00-0123456789ac")  # another RPC interface (SAMR's)
SYNTAXES = {"ndr32": (rpc.NDR32, 2), "ndr64": (rpc.NDR64, 1), "btfn": (rpc.btfn_uuid(), 1)}


@dataclass(frozen=True)
class Bind:
    """A bind (or alter_context) offering one context per entry of `offers`, in order (cont_id 0, 1, ...)."""

    alter: bool
    offers: tuple[str, ...]  # ndr32, ndr64, btfn: the KMS interface with that syntax; foreign: another interface
    multiplex: bool

    def describe(self) -> str:
        return f"{'alter_context' if self.alter else 'bind'}({'+'.join(self.offers)}{', mpx' if self.multiplex else ''})"


@dataclass(frozen=True)
class Request:
    """The seed's request on a context of the caller's choosing."""

    cont_id: int
    opnum: int
    ndr64: bool  # marshalled as NDR64 (whatever the context's syntax)

    def describe(self) -> str:
        return f"request(ctx {self.cont_id}{f', opnum {self.opnum}' if self.opnum else ''}{', NDR64' if self.ndr64 else ''})"


@dataclass(frozen=True)
class Mutated:
    """The PDU of a mutated exchange that the mutation changed (its bind or its request)."""

    mutation: Mutation

    def describe(self) -> str:
        return f"mutated({self.mutation.describe()})"


Action = Bind | Request | Mutated


@dataclass(frozen=True)
class Sequence:
    actions: tuple[tuple[int, Action], ...]  # (connection, action), in the order they are sent
    prologue: bool  # each connection opens with the standard bind unless it starts with a bind of its own

    def describe(self) -> str:
        steps = "; ".join(f"c{c}:{a.describe()}" for c, a in self.actions)
        return f"sequence[{'bind first; ' if self.prologue else ''}{steps}]"


def sequences() -> st.SearchStrategy[Sequence]:
    offers = st.lists(st.sampled_from(["ndr32", "ndr64", "btfn", "foreign"]), min_size=1, max_size=4, unique=True)
    action = st.one_of(
        st.builds(Request, st.integers(0, 3), st.sampled_from([0, 0, 1, 0xFFFF]), st.booleans()),
        st.builds(Bind, st.booleans(), offers.map(tuple), st.booleans()),
        mutations().map(Mutated),
    )
    steps = st.lists(st.tuples(st.integers(0, CONNECTIONS - 1), action), min_size=1, max_size=MAX_ACTIONS)
    return st.builds(Sequence, steps.map(tuple), st.booleans())


def _bind(action: Bind, call_id: int) -> bytes:
    contexts = [rpc.ContextElement(i, FOREIGN_INTERFACE if name == "foreign" else rpc.KMS_INTERFACE,
                                   rpc.KMS_INTERFACE_VERSION, (SYNTAXES.get(name, SYNTAXES["ndr32"]),))
                for i, name in enumerate(action.offers)]
    ptype = rpc.PType.ALTER_CONTEXT if action.alter else rpc.PType.BIND
    flags = rpc.FIRST_LAST | (rpc.PFC_CONC_MPX if action.multiplex else 0)
    return rpc.Bind(contexts, rpc.Header(ptype, flags, call_id)).encode()


def render(seed: Seed, sequence: Sequence) -> Program:
    """The program of a sequence: call_ids count up per connection from 2, as vlmcs's do."""
    base_bind, base_request = seed.standard()
    base_alter = _bind(Bind(True, ("ndr32",), True), 2)
    _, payload = seed.sealed()
    actions, opened = [], set()
    for conn, action in sequence.actions:
        if sequence.prologue and conn not in opened and not (isinstance(action, Bind) and not action.alter):
            actions.append((conn, Bind(False, ("ndr32",), True)))
        opened.add(conn)
        actions.append((conn, action))
    steps, call_ids = [], {}
    for conn, action in actions:
        call_id = call_ids[conn] = call_ids.get(conn, 1) + 1
        if isinstance(action, Bind):
            steps.append(Step(conn, _bind(action, call_id), base_alter if action.alter else base_bind))
        elif isinstance(action, Request):
            stub = ndr.encode_request_stub(payload, action.ndr64)
            pdu = rpc.Request(stub, rpc.Header(rpc.PType.REQUEST, rpc.FIRST_LAST, call_id), action.cont_id,
                              action.opnum).encode()
            steps.append(Step(conn, pdu, base_request))
        else:
            bind, request = apply(seed, action.mutation)
            in_bind = action.mutation.in_bind
            steps.append(Step(conn, bind if in_bind else request, base_bind if in_bind else base_request))
    return Program(tuple(steps), sequence.describe())
