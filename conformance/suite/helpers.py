"""What several areas' checks share: liveness after a negative check, binding, and counting requests."""

from __future__ import annotations

import uuid

from conformance import catalog as catalog_mod
from conformance.harness.evidence import ClauseFailure, expect_outcome
from conformance.harness.profile import NotServed
from conformance.net.outcomes import Activation, BindAck, Outcome
from conformance.net.runner import BindOptions, NotNegotiated, Session
from conformance.wire import rpc

LIVE = ["Response", "Refusal"]  # any well-formed KMS answer: integrity is KMS-MSG-002's business


def still_serves(target, after: str) -> Activation:
    """A new connection still gets a KMS answer (a response or a refusal); a dead or hung host fails here."""
    result = target.alive()
    if not result.outcome.is_kms_answer:
        raise ClauseFailure(LIVE, result.outcome, result.transcript, f"the host stopped serving after {after}")
    return result


def bind_ack(outcome: Outcome, transcript) -> rpc.BindAck:
    """The PDU of a bind_ack outcome; anything else fails the check."""
    expect_outcome(outcome, ["BindAck"], transcript)
    assert isinstance(outcome, BindAck)  # for the type checker: expect_outcome has just judged it
    return outcome.pdu


def negotiate(conn: Session, options: BindOptions = BindOptions()) -> tuple[int, bool]:
    """Bind (and alter_context if needed); a host that will not bind fails the check with what it answered."""
    try:
        return conn.negotiate(options)
    except NotNegotiated as exc:
        raise ClauseFailure(["BindAck"], exc.outcome, conn.transcript, f"binding failed at the {exc.stage}") from None


def windows_edition(target, n_policy: int) -> catalog_mod.Edition:
    """A Windows edition with this N policy that the host activates (learned, not assumed)."""
    return target.serves.edition_where(
        f"Windows edition with N = {n_policy}",
        lambda e: e.app_id == catalog_mod.WINDOWS_APP_ID and e.n_policy == n_policy)


def counting_edition(target) -> catalog_mod.Edition:
    """N = 25 where the host activates one (cache cap 50: the most room to see deltas), else N = 5."""
    try:
        return windows_edition(target, 25)
    except NotServed:
        return windows_edition(target, 5)


def count_for(target, edition: catalog_mod.Edition, cmid: uuid.UUID | None = None, fresh: bool = True,
              **fields) -> tuple[int, object]:
    """The count the host reports to one activation of `edition` (a fresh CMID unless given or not `fresh`)."""
    result = target.activate(target.request(edition.protocol, edition=edition, cmid=cmid, fresh=fresh, **fields))
    if result.response is None:
        raise ClauseFailure(["Response"], result.outcome, result.transcript,
                            f"an activation of {edition.name} (N = {edition.n_policy})")
    return result.response.response.count, result


def as_a_live_host(target, request, edition: catalog_mod.Edition, clients: int) -> None:
    """On a test host, the clients a live host would have: `clients` fresh clients of `edition` (after emptying
    the table where the control channel does that in one command); any other host is taken as it is."""
    if target.life is None:
        return
    if target.life.means == "control":
        request.getfixturevalue("fresh_host").reset()
    for _ in range(clients):
        count_for(target, edition)
