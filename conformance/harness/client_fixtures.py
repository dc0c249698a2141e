"""Fixtures of the client under test beyond its request: the discovery world (`discovery`) and the broken
answers (`answers`), for the client of --client-cmd or, in the embedded run, the reference client.

A --client-cmd with {domain} discovers its host (KMS-DISC-001..006); one with {host}:{port} is given its
host by hand (KMS-DISC-007, KMS-CLI-010..014). The embedded run checks the reference client both ways.
"""

from __future__ import annotations

import pytest

from conformance.harness import clauses

from .fixtures import reference_client_command
from .run import ClientReport, run_of

# the reference client discovering, with a state directory, and a silent host's wait short
REFERENCE_DISCOVERY = "--discover {domain} --dns-server {dns} --state {state} --timeout 2"
# how the reference client reports what it made of an answer (kmsconf activate's last line)
REFERENCE_REPORT = ClientReport(activated=r"activated: yes", rejected=r"verified\s*: NO")


@pytest.fixture(scope="session")
def discovery(pytestconfig: pytest.Config):
    from .discovery_mode import DiscoveryRuns

    settings = run_of(pytestconfig).settings
    command = settings.client_cmd
    if not command and settings.embedded:
        discovering, manual = reference_client_command(REFERENCE_DISCOVERY), reference_client_command()
    elif not command:
        pytest.skip(reason='client discovery checks need a client to test: --client-cmd "COMMAND {domain}"')
    else:
        discovering, manual = (command, None) if "{domain}" in command else (None, command)
    runs = DiscoveryRuns(discovering, manual, timeout=settings.timeout * 6,
                         weight_runs=settings.disc_weight_runs or clauses.get("KMS-DISC-003").expect["runs"],
                         use_namespace=settings.disc_namespace)
    try:
        yield runs
    finally:
        runs.stop()


@pytest.fixture(scope="session")
def answers(pytestconfig: pytest.Config):
    from .answer_mode import AnswerRuns

    settings = run_of(pytestconfig).settings
    command, report = settings.client_cmd, settings.client_report
    if not command and settings.embedded:
        command, report = reference_client_command(), REFERENCE_REPORT
    elif not command:
        pytest.skip(reason='client conformance checks need a client to test: --client-cmd "COMMAND {host}:{port}"')
    return AnswerRuns(command if "{port}" in command else None, report, timeout=settings.timeout * 6)
