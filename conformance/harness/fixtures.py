"""The fixtures the checks use: the target (embedded or --target), its control channel, a client run, DNS."""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass

import pytest

from . import clauses as clause_registry
from .evidence import check_exchanges, exchanges_of
from .run import FOOTPRINT_PROPERTY, KmsRun, run_of
from .selection import clause_of

REFERENCE_CLIENT_PRODUCT = "Windows 10/11 Enterprise"


def reference_client_command(where: str = "{host}:{port}") -> str:
    """The reference client as a --client-cmd: given its host, or (where = "--discover ...") finding it."""
    return f"{shlex.quote(sys.executable)} -m conformance.cli activate {where} --product '{REFERENCE_CLIENT_PRODUCT}'"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "protocol" in metafunc.fixturenames:
        versions = run_of(metafunc.config).settings.protocols
        metafunc.parametrize("protocol", versions, ids=[f"v{v}" for v in versions])


@pytest.fixture(scope="session")
def kms_target(pytestconfig: pytest.Config):
    """The host under test: --target as it is, --target-cmd started (and restarted) by the suite, or the
    embedded reference host."""
    from conformance.reference.host.config import HostConfig
    from conformance.reference.host.server import HostThread

    from conformance.net.control import ControlChannel

    from .host_life import ControlledLife
    from .target import Target

    settings = run_of(pytestconfig).settings
    common = dict(timeout=settings.timeout, profile=settings.profile, protocols=settings.protocols,
                  key_group=settings.key_group, activation_interval=settings.activation_interval,
                  renewal_interval=settings.renewal_interval, pinned_cmid=settings.audit_cmid)
    if settings.target_cmd:
        yield from _started_target(settings, common, pytestconfig)
        return
    if settings.target is not None:
        target = Target(*settings.target, **common)
        if settings.control:
            target.life = ControlledLife(ControlChannel.tcp(*settings.control), target)
        yield target
        return
    group = settings.key_group
    # the embedded host carries the declared key group, so `--host-key-group server-b` checks Table 2 for it
    thread = HostThread(HostConfig(port=0, control=False, key_group=None if group == "auto" else group))
    host, port = thread.start()
    try:
        target = Target(host, port, embedded=True, **common)
        target.life = ControlledLife(ControlChannel(lambda command: thread.call(thread.host.control, command)), target)
        yield target
    finally:
        thread.stop()


def _started_target(settings, common: dict, config: pytest.Config):
    from conformance.process.managed import ManagedHost
    from conformance.process.monitor import TargetCommand, TargetStartError

    from .host_life import StartedLife
    from .target import Target, audit_cmid

    managed = ManagedHost(TargetCommand.parse(settings.target_cmd), startup_timeout=max(settings.timeout, 5.0))
    try:
        try:
            managed.start()
        except TargetStartError as exc:
            pytest.exit(f"kms-conformance: --target-cmd: {exc}", returncode=3)
        target = Target(*managed.address, **common)
        target.pinned_cmid = target.pinned_cmid or audit_cmid(managed.address)  # one audit CMID over restarts

        def follow(host: str, port: int) -> None:
            target.host, target.port = host, port

        managed.on_address = follow
        target.life = StartedLife(managed, target, config)
        yield target
    finally:
        managed.close()
        _keep_output(managed, config)


def _keep_output(managed, config: pytest.Config) -> None:
    """The host's output over the run (as far as the monitor keeps it), beside the summary: reports/host-output.log
    (one per xdist worker, each of which starts its own host)."""
    from .verdicts import summary_path

    worker = getattr(config, "workerinput", {}).get("workerid")
    path = summary_path(config).with_name(f"host-output{'-' + worker if worker else ''}.log")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(managed.process.lines()) + "\n", encoding="utf-8")


@pytest.fixture(scope="session")
def kms_run(pytestconfig: pytest.Config) -> KmsRun:
    """The run's state: its settings, and what its checks leave for later ones (ROB-001's bad-input count)."""
    return run_of(pytestconfig)


@pytest.fixture
def clause(request: pytest.FixtureRequest) -> clause_registry.Clause:
    """The clause of the check's one `clause` marker: its rule and expected values, the id written once."""
    ids = [marker.args[0] for marker in request.node.iter_markers("clause")]
    if len(ids) != 1:
        raise pytest.UsageError(f"{request.node.nodeid}: the clause fixture needs exactly one clause marker, "
                                f"found {ids or 'none'}")
    return clause_registry.get(ids[0])


@pytest.fixture(autouse=True)
def _clause_context(request: pytest.FixtureRequest):
    """Tell the target which clause is running (its requests are that clause's footprint), and show the check's own
    exchanges in a failure that names none."""
    clause = clause_of(request.node)
    if clause is None:
        yield
        return
    with check_exchanges(lambda: (exchanges_of(request.node) or ([], None))[0]):
        if "kms_target" not in request.fixturenames:
            yield
            return
        target = request.getfixturevalue("kms_target")
        target.current_clause = clause.id
        target.recorded.clear()
        target.connect_errors.clear()
        yield
    # the CMIDs sent so far (this check's, and any learning probes'), on the teardown report: they reach
    # the xdist controller with it
    sent = target.end_check()
    if sent:
        request.node.user_properties.append((FOOTPRINT_PROPERTY, json.dumps(sent)))


@pytest.fixture(scope="session")
def client_run(pytestconfig: pytest.Config, request: pytest.FixtureRequest):
    """What the client under test sent; client checks skip without --client-cmd, saying so."""
    settings = run_of(pytestconfig).settings
    command = settings.client_cmd
    if not command and settings.embedded:
        command = reference_client_command()  # the embedded run checks the reference client too
    if not command:
        pytest.skip(reason='client conformance checks need a client to test: --client-cmd "COMMAND {host}:{port}"')
    if "{port}" not in command:  # a discovering client: its requests are those the host it found received
        run = request.getfixturevalue("discovery").names().client_run()
    else:
        from .client_mode import run_client

        run = run_client(command, timeout=settings.timeout * 6)
    if not run.request_pdus:
        from .client_process import last_lines
        from .evidence import ClauseFailure

        said = last_lines(run.stdout + run.stderr)
        raise ClauseFailure(["a KMS request"], f"none: the client exited with {run.returncode}",
                            detail=f"what it printed last: {said}")
    return run


@dataclass
class DnsDeployment:
    domain: str
    server: tuple[str, int]
    port: int


@pytest.fixture(scope="session")
def dns_deployment(pytestconfig: pytest.Config, kms_target):
    """The deployment whose DNS the KMS-DNS checks audit; the embedded run publishes into a lab named."""
    settings = run_of(pytestconfig).settings
    if settings.dns is not None:
        yield DnsDeployment(*settings.dns)
        return
    from conformance.dns.lab import DnsLab, find_named
    from conformance.reference.host.publish import Publisher, PublishTarget

    if not kms_target.embedded:
        pytest.skip(reason="DNS checks need --dns-domain DOMAIN --dns-server HOST:PORT for a target's deployment")
    if find_named() is None:
        pytest.skip(reason="DNS checks of the embedded host need BIND's named (Debian bind9; `make setup` installs it)")
    with DnsLab(zones=("kms.test",)) as lab:
        published = Publisher(lab.address, "kms", kms_target.host, kms_target.port, [PublishTarget("kms.test")]).publish()
        if not all(ok for _, ok, _ in published):
            raise RuntimeError(f"could not publish the embedded host in the lab named: {published}")
        yield DnsDeployment("kms.test", lab.address, kms_target.port)
