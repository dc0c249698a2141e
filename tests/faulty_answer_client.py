"""The reference client, trusting one thing it should check: `python faulty_answer_client.py FAULT HOST:PORT`.

It activates through the genuine client (conformance.reference.client.activate, which verifies the answer
as a Windows client does) and then reports as `kmsconf activate` does, except that it overlooks the
problems its fault names. Used to prove each of KMS-CLI-010..014 fails for a client that breaks it.
"""

import sys

from conformance import catalog
from conformance.net.address import parse_address
from conformance.net.outcomes import Response
from conformance.reference.client.activation import activate
from conformance.wire.requests import build_request

EDITION = "Windows 10/11 Enterprise"  # V6, N = 25: every rule of the answer applies
# fault -> the kinds of problem (net.outcomes) it overlooks
OVERLOOKS = {
    "trusts-echoes": {"cmid", "request_time"},
    "trusts-integrity": {"mac", "hash", "hmac"},
    "trusts-xored-ivs": {"xored_ivs"},
    "trusts-pid-size": {"payload"},  # the answer's base does not decode only because of its PIDSize
    "activated-below-n": set(),
}


def main(fault: str, address: str) -> int:
    request = build_request(catalog.load().edition(EDITION), workstation="faulty.answer.client")
    result = activate(*parse_address(address), request)
    outcome = result.outcome
    if not isinstance(outcome, Response):
        print(f"verified    : NO ({outcome.describe()}); activated: no")
        return 1
    overlooked = OVERLOOKS[fault]
    if fault == "trusts-pid-size" and not all("NUL" in p or "PIDSize" in p for p in outcome.problems):
        overlooked = set()
    verified = not (outcome.problem_kinds - overlooked)
    count = outcome.opened.response.count if outcome.opened is not None else request.n_policy
    activated = verified and (fault == "activated-below-n" or count >= request.n_policy)
    print(f"count       : {count} (needs {request.n_policy})")
    print(f"verified    : {'yes' if verified else 'NO'}; activated: {'yes' if activated else 'no'}")
    return 0 if verified else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
