"""The suite's command-line options, validated once, before any check runs.

Every mistake ends the run with one line naming the option and what to write instead:
exit status 2 for a usage error, 3 when the target cannot be reached at all. The checks
read the validated `Settings`, never the raw options.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import sys
import uuid
from pathlib import Path

import pytest

from conformance.errors import EXIT_UNREACHABLE, EXIT_USAGE, UsageError
from conformance.net.address import format_address, is_loopback, parse_address, reachable

from . import clauses as clause_registry
from .expectations import load_expectations
from .probes import control_belongs, speaks_rpc, try_start
from .run import RUN_KEY, ClientReport, KmsRun, Settings

SUITE = Path(__file__).resolve().parents[1] / "suite"
SUMMARY_DEFAULT = "reports/summary.json"
FUZZ_REPORT_DEFAULT = "reports/fuzz-campaign.json"
# options whose presence means "this is a conformance run": the plugin then takes over collection and reports
KMS_OPTIONS = ("target", "target_cmd", "client_cmd", "control", "expect", "clause", "dns_domain")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kms-conformance", "KMS conformance suite")
    group.addoption("--target", default=None, metavar="HOST:PORT",
                    help="KMS host under test, e.g. 10.0.0.5:1688 or [fd00::5]:1688 (default: start the embedded "
                         "reference host)")
    group.addoption("--target-cmd", default=None, metavar="COMMAND",
                    help='start the host under test on a free loopback port and be in charge of its life: fresh '
                         'starts, a clock moved by libfaketime, crashes watched and restarted; {port} where it takes '
                         'its port, {dir} an empty state directory per fresh start, e.g. '
                         '"/opt/vlmcsd -D -e -M1 -E1 -L 127.0.0.1:{port}"')
    group.addoption("--protocol", default="all", metavar="4|5|6|all", help="KMS versions to check")
    group.addoption("--profile", default="microsoft", metavar="|".join(clause_registry.PROFILES),
                    help="microsoft: what a genuine host must do; emulator: tolerate what emulators skip")
    group.addoption("--host-key-group", default="auto", metavar="GROUP",
                    help="the target's host key: client-vl, server-a, server-b, server-c or a catalog slug "
                         "(`kmsconf keys`); auto: the key its ePID names")
    group.addoption("--target-timeout", type=float, default=10.0, metavar="SECONDS")
    group.addoption("--audit-cmid", default=None, metavar="GUID",
                    help="the one CMID of the safe clauses (default: derived from this machine and the target, so "
                         "reruns renew one entry; pin it where that changes, e.g. in a CI container)")
    group.addoption("--control", default=None, metavar="HOST:PORT",
                    help="test-control channel of a reference host started with `kmsconf host --control`")
    group.addoption("--activation-interval", type=int, default=120, metavar="MIN",
                    help="activation interval the target is configured with")
    group.addoption("--renewal-interval", type=int, default=10080, metavar="MIN",
                    help="renewal interval the target is configured with")
    group.addoption("--expect", default=None, metavar="NAME|FILE.toml",
                    help="declared deviations of this target: a shipped profile (vlmcsd, pykms) or a file")
    group.addoption("--client-cmd", default=None, metavar="COMMAND",
                    help='client under test, run against an instrumented reference host: "vlmcs {host}:{port}"')
    group.addoption("--client-exit-status", action="store_true", default=False,
                    help="the client under test reports its result by its exit status: 0 activated, other not")
    group.addoption("--client-activated", default=None, metavar="REGEX",
                    help="the client under test said it activated when its output matches REGEX")
    group.addoption("--client-rejected", default=None, metavar="REGEX",
                    help="the client under test said it rejected the host's answer when its output matches REGEX")
    group.addoption("--disc-weight-runs", type=int, default=None, metavar="N",
                    help="runs of the discovery weight check, KMS-DISC-003 (default: its own, in `kmsconf clauses`)")
    # tests only: the discovery lab on the machine's loopback even as root
    group.addoption("--disc-no-namespace", action="store_true", default=False, help=argparse.SUPPRESS)
    group.addoption("--dns-domain", default=None, metavar="DOMAIN", help="audit the _vlmcs._tcp records of DOMAIN")
    group.addoption("--dns-server", default=None, metavar="HOST:PORT", help="DNS server to ask (with --dns-domain)")
    group.addoption("--dns-port", type=int, default=None,
                    help="the KMS port the deployment advertises (default: --target's port, else 1688)")
    group.addoption("--evidence-dir", default=None, metavar="DIR",
                    help="write each check's exchanges there as pcap and decoded JSON")
    group.addoption("--clause", default=None, metavar="ID[,ID...]",
                    help="run only these clauses: ids, areas (KMS-RPC) or patterns (KMS-MSG-00*)")
    group.addoption("--summary", default=SUMMARY_DEFAULT, metavar="PATH", help="where summary.json goes")
    fuzz = parser.getgroup("kms-fuzz", "KMS fuzz campaigns (-m fuzz)")
    fuzz.addoption("--fuzz-runs", type=int, default=None, metavar="N",
                   help="runs of each fuzz campaign, over all its shards (default: KMS-ROB-005's 300, "
                        "the long campaign's 2000)")
    fuzz.addoption("--fuzz-shards", type=int, default=None, metavar="K",
                   help="split each campaign into K shards (default: the number of xdist workers, else 1)")
    fuzz.addoption("--fuzz-shard", default=None, metavar="I/K",
                   help="run only shard I (0..K-1) of K: one machine's or CI job's part of a campaign")
    fuzz.addoption("--fuzz-seed", type=int, default=None, metavar="N",
                   help="seed of the shards' random streams (default: one per run); the same seed and shard "
                        "draw the same mutations")
    fuzz.addoption("--fuzz-report", default=FUZZ_REPORT_DEFAULT, metavar="PATH",
                   help="the merged campaign report; findings go to findings/shard-K/ beside it")


def is_conformance_run(config: pytest.Config) -> bool:
    """Did the user ask for a conformance run (any kms option), as opposed to merely having the plugin installed?"""
    return any(config.getoption(f"--{name.replace('_', '-')}") for name in KMS_OPTIONS)


def settings(config: pytest.Config) -> Settings:
    """The options, validated: UsageError names the option and what to write instead."""
    get = config.getoption
    target = _address("--target", get("--target"))
    control = _address("--control", get("--control"))
    if control is not None and not is_loopback(control[0]):
        raise UsageError(f"--control {get('--control')}: the control channel is loopback-only")
    if control is not None and target is None:
        raise UsageError("--control needs --target (the host the channel controls)")
    if target is not None and target[1] == 0:
        raise UsageError(f"--target {get('--target')}: port 0 is no port to connect to")
    if get("--protocol") not in ("4", "5", "6", "all"):
        raise UsageError(f"--protocol {get('--protocol')}: write 4, 5, 6 or all")
    protocols = (4, 5, 6) if get("--protocol") == "all" else (int(get("--protocol")),)
    if get("--profile") not in clause_registry.PROFILES:
        raise UsageError(f"--profile {get('--profile')}: write {' or '.join(clause_registry.PROFILES)}")
    evidence = get("--evidence-dir")
    if evidence:
        try:
            Path(evidence).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--evidence-dir {evidence}: cannot make a directory there "
                             f"({exc.strerror or exc})") from None
    key_group = get("--host-key-group")
    if key_group != "auto":
        from conformance import catalog

        try:
            catalog.load().host_key(key_group)
        except LookupError as exc:
            raise UsageError(f"--host-key-group {key_group}: {exc}") from None
    timeout = get("--target-timeout")
    if timeout <= 0:
        raise UsageError(f"--target-timeout {timeout}: give a number of seconds above 0")
    for name in ("--activation-interval", "--renewal-interval"):
        if get(name) <= 0:
            raise UsageError(f"{name} {get(name)}: give the interval in minutes (above 0)")
    expect = get("--expect")
    expectations = load_expectations(expect) if expect else {}
    client_cmd = get("--client-cmd")
    if client_cmd:
        _check_client_cmd(client_cmd)
    dns = _dns(config, target)
    _check_target_cmd(config, target)
    audit = get("--audit-cmid")
    if audit:
        try:
            audit = uuid.UUID(audit.strip("{}"))
        except ValueError:
            raise UsageError(f"--audit-cmid {audit}: not a GUID (write e.g. 3f2504e0-4f89-41d3-9a0c-0305e82c3301)") \
                from None
    from .sharding import fuzz_sharding  # imported when used: pytest_plugins loads it as a plugin of its own

    fuzz_sharding(config)  # its mistakes too, before anything runs
    patterns = tuple(p.strip() for p in (get("--clause") or "").split(",") if p.strip())
    for pattern in patterns:
        if not clause_registry.select(pattern):
            raise UsageError(f"--clause {pattern}: matches no clause (ids like KMS-RPC-001, areas like KMS-RPC, "
                             f"patterns like 'KMS-MSG-00*'; `kmsconf clauses` lists them)")
    weight_runs = get("--disc-weight-runs")
    if weight_runs is not None and weight_runs < 1:
        raise UsageError(f"--disc-weight-runs {weight_runs}: give a number of runs above 0")
    return Settings(target, control, protocols, get("--profile"), key_group, timeout, get("--activation-interval"),
                    get("--renewal-interval"), expectations, expect, _strict(config), client_cmd, dns, patterns,
                    audit, config.getoption("--target-cmd"), _client_report(config), weight_runs,
                    not get("--disc-no-namespace"))


def _client_report(config: pytest.Config) -> ClientReport | None:
    """How the client says what it made of an answer; None: it was not said."""
    exit_status, activated, rejected = (config.getoption(o) for o in ("--client-exit-status", "--client-activated",
                                                                        "--client-rejected"))
    if exit_status and (activated or rejected):
        raise UsageError("--client-exit-status: the client reports by its exit status or by its output, not both "
                         "(leave out --client-activated/--client-rejected)")
    for option, pattern in (("--client-activated", activated), ("--client-rejected", rejected)):
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise UsageError(f"{option} {pattern!r}: not a regular expression ({exc})") from None
    if not (exit_status or activated or rejected):
        return None
    return ClientReport(exit_status, activated, rejected)


def _strict(config: pytest.Config) -> bool:
    """pytest's own --strict (ini `strict`) also makes a failed SHOULD clause fail the run."""
    try:
        return bool(config.getini("strict"))
    except ValueError:  # a pytest without the `strict` ini option
        return bool(getattr(config.option, "strict", False))


def _address(option: str, text: str | None) -> tuple[str, int] | None:
    if not text:
        return None
    try:
        return parse_address(text)
    except UsageError as exc:
        raise UsageError(f"{option} {text}: {exc}") from None


def _check_client_cmd(command: str) -> None:
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise UsageError(f"--client-cmd {command!r}: {exc}") from None
    if not argv:
        raise UsageError("--client-cmd is empty: give the client's command, e.g. \"vlmcs {host}:{port}\"")
    program = argv[0]
    if shutil.which(program) is None and not (Path(program).is_file() and Path(program).stat().st_mode & 0o111):
        raise UsageError(f"--client-cmd: {program!r} is not an executable on PATH or a path to one")
    given, discovers = "{port}" in command, "{domain}" in command
    if not given and not discovers:
        raise UsageError(f"--client-cmd {command!r}: put {{port}} (and {{host}}) where the client takes the KMS "
                         f"host's address, e.g. \"vlmcs {{host}}:{{port}}\", or {{domain}} where it takes the domain "
                         f"it discovers its host in, e.g. \"vlmcs .{{domain}}\"")
    if given and discovers:
        raise UsageError(f"--client-cmd {command!r}: give the client its host ({{host}}:{{port}}) or a domain to "
                         f"discover it in ({{domain}}), not both: each is a run of its own")


def _check_target_cmd(config: pytest.Config, target: tuple[str, int] | None) -> None:
    command = config.getoption("--target-cmd")
    if not command:
        return
    from conformance.process.monitor import TargetCommand

    TargetCommand.parse(command)
    if target is not None:
        raise UsageError("--target and --target-cmd name two hosts: give one (--target-cmd starts its host itself)")
    if config.getoption("--control"):
        raise UsageError("--control is the reference host's channel for a host already running: with --target-cmd "
                         "the suite starts, empties and moves the host itself")


def _dns(config: pytest.Config, target: tuple[str, int] | None) -> tuple[str, tuple[str, int], int] | None:
    domain, server, port = config.getoption("--dns-domain"), config.getoption("--dns-server"), config.getoption("--dns-port")
    if server and not domain:
        raise UsageError("--dns-server needs --dns-domain DOMAIN (the domain whose _vlmcs._tcp records to audit)")
    if not domain:
        return None
    if not server:
        raise UsageError("--dns-domain needs --dns-server HOST:PORT (the DNS server to ask)")
    address = _address("--dns-server", server) if ":" in server or server.startswith("[") else (server, 53)
    if port is None:
        port = target[1] if target else 1688
    return domain, address, port


SETTINGS_KEY = pytest.StashKey[Settings]()  # validated once, in pytest_cmdline_main, and kept for pytest_configure


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """Validate before pytest starts a session: one line and exit 2 (usage) or 3 (unreachable), never a wall."""
    if config.option.help or config.option.version or getattr(config.option, "markers", False):
        return None
    try:
        run = config.stash[SETTINGS_KEY] = settings(config)
    except UsageError as exc:
        sys.stderr.write(f"kms-conformance: {exc}\n")
        return EXIT_USAGE
    if run.target_cmd and not _collect_only(config):
        why = try_start(run.target_cmd, run.timeout)
        if why is not None:
            sys.stderr.write(f"kms-conformance: --target-cmd {run.target_cmd!r}: {why}\n")
            return EXIT_UNREACHABLE
    if run.target is not None and not _collect_only(config):
        why = reachable(run.target, run.timeout)
        if why is not None:
            sys.stderr.write(f"kms-conformance: --target {format_address(*run.target)}: cannot connect ({why}); "
                             f"is the KMS host running there?\n")
            return EXIT_UNREACHABLE
        why = speaks_rpc(run.target, run.timeout)
        gone = reachable(run.target, run.timeout) if why is not None else None
        if gone is not None:  # it listened, then nothing did: it died of the probe's empty connection
            from .host_life import probe_death

            probe_death(config, run.target, gone)
        elif why is not None:
            sys.stderr.write(f"kms-conformance: --target {format_address(*run.target)}: something listens there, "
                             f"but a DCE/RPC bind got {why}; is it a KMS host (the port)?\n")
            return EXIT_UNREACHABLE
        if run.control is not None:
            why = control_belongs(run.control, run.target, run.timeout, run.audit_cmid)
            if why is not None:
                sys.stderr.write(f"kms-conformance: --control {format_address(*run.control)}: {why}\n")
                return EXIT_USAGE
    return None


def _collect_only(config: pytest.Config) -> bool:
    return bool(config.getoption("collectonly", default=False))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    try:
        run_settings = config.stash.get(SETTINGS_KEY, None) or settings(config)
    except UsageError as exc:  # reached only where pytest_cmdline_main did not run first (an xdist worker)
        raise pytest.UsageError(str(exc)) from None
    asked = is_conformance_run(config)
    config.stash[RUN_KEY] = KmsRun(run_settings, asked)
    if asked and config.args_source == pytest.Config.ArgsSource.INVOCATION_DIR:
        # `pytest --target H:P` with no path: the suite, wherever pytest runs (installed: site-packages)
        config.args = [str(SUITE)]
