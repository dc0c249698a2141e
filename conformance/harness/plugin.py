"""The pytest plugin: options, the target fixture, clause verdicts, expected deviations, summary.

Registered through the `pytest11` entry point, so `pytest --target HOST:PORT` works in
any checkout or after `pip install kms-conformance`. Without --target the session
starts the reference host in-process on a free loopback port.

Under pytest-xdist the checks run in worker processes: each report carries its clause
verdict (and evidence, and a fuzz shard's figures) in `report.user_properties`, which
xdist sends to the controller, and the verdicts are gathered from the reports in
`pytest_runtest_logreport`, the same way with and without xdist.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import socket
import sys
import tomllib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import clauses as clause_registry
from .evidence import Inconclusive

VERDICT_ORDER = ("fail", "xpass", "inconclusive", "xfail", "pass", "skip")
SUMMARY_DEFAULT = "reports/summary.json"
INCONCLUSIVE_PREFIX = "inconclusive: "
FUZZ_REPORT_DEFAULT = "reports/fuzz-campaign.json"
VERDICT_PROPERTY = "kms_verdict"  # report.user_properties entries: JSON, so junitxml and xdist carry them as text
EVIDENCE_PROPERTY = "kms_evidence"
FUZZ_SHARD_PROPERTY = "kms_fuzz_shard"
EVIDENCE_KEY = pytest.StashKey[list]()
REFERENCE_CLIENT_PRODUCT = "Windows 10/11 Enterprise"


@dataclass(frozen=True)
class Deviation:
    clause: str
    reason: str
    text: str = ""


def load_expectations(path: str) -> dict[str, Deviation]:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise pytest.UsageError(f"--expect {path}: {exc}") from None
    known = clause_registry.load()
    out = {}
    for row in data.get("deviation", []):
        cid, reason = row.get("clause"), row.get("reason")
        if cid not in known:
            raise pytest.UsageError(f"--expect {path}: unknown clause {cid!r}")
        if not reason:
            raise pytest.UsageError(f"--expect {path}: deviation {cid} has no reason (a reason is mandatory)")
        out[cid] = Deviation(cid, reason, row.get("text", ""))
    return out


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kms-conformance", "KMS conformance suite")
    group.addoption("--target", default=None, metavar="HOST:PORT",
                    help="KMS host under test (default: start the embedded reference host)")
    group.addoption("--protocol", default="all", choices=("4", "5", "6", "all"), help="KMS versions to check")
    group.addoption("--profile", default="microsoft", choices=clause_registry.PROFILES,
                    help="microsoft: what a genuine host must do; emulator: tolerate what emulators skip")
    group.addoption("--host-key-group", default="auto",
                    choices=("auto", "client-vl", "server-a", "server-b", "server-c"),
                    help="the target's host key group (auto: inferred from its answers)")
    group.addoption("--target-timeout", type=float, default=10.0, metavar="SECONDS")
    group.addoption("--control", default=None, metavar="HOST:PORT",
                    help="test-control channel of a reference host started with `kmsconf host --control`")
    group.addoption("--activation-interval", type=int, default=120, metavar="MIN",
                    help="activation interval the target is configured with")
    group.addoption("--renewal-interval", type=int, default=10080, metavar="MIN",
                    help="renewal interval the target is configured with")
    group.addoption("--expect", default=None, metavar="FILE.toml", help="expected deviations of this target")
    group.addoption("--client-cmd", default=None, metavar="COMMAND",
                    help='client under test, run against an instrumented reference host: "vlmcs {host}:{port}"')
    group.addoption("--dns-domain", default=None, metavar="DOMAIN", help="audit the _vlmcs._tcp records of DOMAIN")
    group.addoption("--dns-server", default=None, metavar="HOST:PORT", help="DNS server to ask (with --dns-domain)")
    group.addoption("--dns-port", type=int, default=1688, help="the KMS port the deployment advertises")
    group.addoption("--evidence-dir", default=None, metavar="DIR",
                    help="write each check's exchanges there as pcap and decoded JSON")
    group.addoption("--clause", default=None, metavar="ID[,ID...]", help="run only the checks of these clauses")
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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "clause(id): the conformance clause a check enforces")
    config.addinivalue_line("markers", "fuzz: a fuzz campaign, run only with -m fuzz")
    config._kms_expect = load_expectations(config.getoption("--expect")) if config.getoption("--expect") else {}
    config._kms_results = defaultdict(list)  # clause id -> [(verdict, message)]
    config._kms_evidence = defaultdict(list)  # clause id -> evidence file names
    config._kms_fuzz_shards = []  # shard records of the fuzz campaigns (conformance.fuzz.campaign.shard_record)
    config._kms_target_name = config.getoption("--target") or "embedded"
    config._kms_fuzz = fuzz_sharding(config)
    config.pluginmanager.register(_ReportCollector(config), "kms-report-collector")


def is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def xdist_worker_count(config: pytest.Config) -> int:
    """Workers of this run, 1 without xdist. xdist also exports PYTEST_XDIST_WORKER_COUNT, but a pytest
    started as a subprocess of a worker inherits it without being a worker: workerinput is the reliable source."""
    return config.workerinput["workercount"] if is_xdist_worker(config) else 1


class _ReportCollector:
    """Gathers clause verdicts, evidence and fuzz shard records from the reports, wherever the check ran."""

    def __init__(self, config: pytest.Config):
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        config = self.config
        for name, value in report.user_properties:
            if name == VERDICT_PROPERTY:
                data = json.loads(value)
                config._kms_results[data["clause"]].append((data["verdict"], data["message"]))
            elif name == EVIDENCE_PROPERTY:
                data = json.loads(value)
                config._kms_evidence[data["clause"]].extend(data["files"])
            elif name == FUZZ_SHARD_PROPERTY and report.when == "call":  # item properties reach teardown too
                config._kms_fuzz_shards.append(json.loads(value))


@dataclass(frozen=True)
class FuzzSharding:
    shards: tuple[int, ...]  # the shard indices this run parametrizes
    count: int
    seed: int


def fuzz_sharding(config: pytest.Config) -> FuzzSharding:
    """The shards of each fuzz campaign; identical on every xdist worker, so they all collect the same items."""
    selected = config.getoption("--fuzz-shard")
    if selected:
        index, sep, count = selected.partition("/")
        try:
            index, count = int(index), int(count)
        except ValueError:
            index = count = -1
        if not sep or not 0 <= index < count:
            raise pytest.UsageError(f"--fuzz-shard {selected!r}: write I/K with 0 <= I < K, e.g. 0/4")
        shards = (index,)
    else:
        count = config.getoption("--fuzz-shards")
        if count is None:
            count = xdist_worker_count(config)
        if count < 1:
            raise pytest.UsageError(f"--fuzz-shards {count}: needs at least 1")
        shards = tuple(range(count))
    seed = config.getoption("--fuzz-seed")
    if seed is None:
        # every worker of one run shares the run's id, so the shards of one run draw from one seed
        seed = int(config.workerinput["testrunuid"][:16], 16) if is_xdist_worker(config) else random.getrandbits(63)
    return FuzzSharding(shards, count, seed)


def fuzz_report_path(config: pytest.Config) -> Path:
    path = Path(config.getoption("--fuzz-report"))
    return path if path.is_absolute() else Path(config.rootpath) / path


@dataclass
class FuzzShard:
    """One shard of a fuzz campaign: its share of the runs, its own random stream and findings directory."""

    index: int
    count: int
    seed: int
    report_dir: Path
    node: pytest.Item

    def findings_dir(self, campaign_dir: str | None = None) -> Path:
        base = self.report_dir / "findings"
        return (base / campaign_dir if campaign_dir else base) / f"shard-{self.index}"

    def run(self, target, total_runs: int, *, name: str, campaign_dir: str | None = None, timeout: float):
        """Run this shard's share of `total_runs`; its record goes to shard.json and to the campaign report."""
        import time

        from conformance.fuzz.campaign import campaign, shard_record, shard_runs, shard_stream

        runs = shard_runs(total_runs, self.index, self.count)
        if runs == 0:
            pytest.skip(reason=f"shard {self.index} of {self.count} has no runs: the campaign has only {total_runs}")
        findings = self.findings_dir(campaign_dir)
        started = time.time()
        result = campaign(target, runs=runs, timeout=timeout, findings_dir=findings,
                          stream=shard_stream(self.seed, self.index))
        record = shard_record(result, campaign=name, index=self.index, count=self.count, seed=self.seed,
                              target=target, findings_dir=findings, started=started, ended=time.time())
        findings.mkdir(parents=True, exist_ok=True)
        (findings / "shard.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        self.node.user_properties.append((FUZZ_SHARD_PROPERTY, json.dumps(record)))
        return result


@pytest.fixture
def fuzz_shard(request: pytest.FixtureRequest) -> FuzzShard:
    """This item's shard of a fuzz campaign (parametrized: one item per shard, which xdist spreads)."""
    sharding: FuzzSharding = request.config._kms_fuzz
    return FuzzShard(request.param, sharding.count, sharding.seed, fuzz_report_path(request.config).parent,
                     request.node)


def selected_protocols(config: pytest.Config) -> tuple[int, ...]:
    choice = config.getoption("--protocol")
    return (4, 5, 6) if choice == "all" else (int(choice),)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "protocol" in metafunc.fixturenames:
        versions = selected_protocols(metafunc.config)
        metafunc.parametrize("protocol", versions, ids=[f"v{v}" for v in versions])
    if "fuzz_shard" in metafunc.fixturenames:
        sharding: FuzzSharding = metafunc.config._kms_fuzz
        metafunc.parametrize("fuzz_shard", sharding.shards, indirect=True,
                             ids=[f"shard{i}of{sharding.count}" for i in sharding.shards])


def _clause_of(item: pytest.Item) -> clause_registry.Clause | None:
    marker = item.get_closest_marker("clause")
    return clause_registry.get(marker.args[0]) if marker else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    profile = config.getoption("--profile")
    wanted = config.getoption("--clause")
    if wanted:
        ids = {c.strip() for c in wanted.split(",")}
        unknown = ids - set(clause_registry.load())
        if unknown:
            raise pytest.UsageError(f"--clause: unknown clause ids {sorted(unknown)} (see `kmsconf clauses`)")
        keep = [i for i in items if (c := _clause_of(i)) is not None and c.id in ids]
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep
    # KMS-ROB-001 (the host still serves) runs after every other check of the run, negative ones included
    items.sort(key=lambda item: (c := _clause_of(item)) is not None and c.id == "KMS-ROB-001")
    fuzzing = "fuzz" in (config.getoption("-m") or "")
    for item in items:
        if "fuzz" in item.keywords and not fuzzing:
            item.add_marker(pytest.mark.skip(reason="fuzz campaign: run with -m fuzz"))
        clause = _clause_of(item)
        if clause is None:
            continue
        item.user_properties.append(("clause", clause.id))
        if profile not in clause.profiles:
            item.add_marker(pytest.mark.skip(reason=f"{clause.id} does not apply to the {profile} profile"))


@pytest.fixture(autouse=True)
def _allure_clause_labels(request: pytest.FixtureRequest) -> None:
    """Label each check in Allure from its clause when the run writes Allure results."""
    clause = _clause_of(request.node)
    if clause is not None and request.config.getoption("allure_report_dir", default=None):
        from conformance.report import allure_labels

        allure_labels.apply(clause, (request.node.function.__doc__ or "").strip())


@pytest.fixture(autouse=True)
def _evidence(request: pytest.FixtureRequest):
    """With --evidence-dir, keep every exchange a host check made as <clause>-<check>.pcap and .json."""
    directory = request.config.getoption("--evidence-dir")
    allure_run = bool(request.config.getoption("allure_report_dir", default=None))
    clause = _clause_of(request.node)
    if not (directory or allure_run) or clause is None or "kms_target" not in request.fixturenames:
        yield
        return
    scratch = None
    if not directory:
        import tempfile

        scratch = tempfile.TemporaryDirectory()
        directory = scratch.name
    target = request.getfixturevalue("kms_target")
    target.recorded.clear()
    yield
    transcripts = [t for t in target.recorded if t]
    if not transcripts:
        return
    from conformance.pcap.decode import decode_tcp, exchanges_json
    from conformance.pcap.reader import read_connections
    from conformance.pcap.writer import write_pcap

    base = Path(directory) / f"{clause.id}-{request.node.name}".replace("/", "_")
    pcap = write_pcap(base.with_suffix(".pcap"), transcripts, host=(target.host, target.port))
    try:
        decoded = exchanges_json([decode_tcp(c) for c in read_connections(pcap)])
    except ValueError as exc:
        decoded = [{"error": str(exc)}]
    base.with_suffix(".json").write_text(json.dumps(decoded, indent=2, default=str), encoding="utf-8")
    if allure_run:
        from conformance.report.allure_labels import attach_evidence

        attach_evidence(transcripts, pcap, base.with_suffix(".json"))
    if scratch is not None:
        scratch.cleanup()
    else:
        # reported with the teardown (pytest_runtest_makereport), which reaches the xdist controller
        request.node.stash.setdefault(EVIDENCE_KEY, []).extend([pcap.name, base.with_suffix(".json").name])


@pytest.fixture(scope="session")
def kms_target(pytestconfig: pytest.Config):
    """The host under test; starts and stops the embedded reference host when no --target is given."""
    from conformance.reference.config import HostConfig
    from conformance.reference.host import HostThread

    from .target import ControlChannel, Target

    common = dict(
        timeout=pytestconfig.getoption("--target-timeout"),
        profile=pytestconfig.getoption("--profile"),
        protocols=selected_protocols(pytestconfig),
        key_group=pytestconfig.getoption("--host-key-group"),
        activation_interval=pytestconfig.getoption("--activation-interval"),
        renewal_interval=pytestconfig.getoption("--renewal-interval"),
    )
    address = pytestconfig.getoption("--target")
    if address:
        from conformance.cli import UsageError, parse_address

        try:
            host, port = parse_address(address)
            control = pytestconfig.getoption("--control")
            channel = ControlChannel.tcp(*parse_address(control)) if control else None
        except (UsageError, ValueError) as exc:
            raise pytest.UsageError(str(exc)) from None
        try:
            socket.create_connection((host, port), timeout=common["timeout"]).close()
        except OSError as exc:
            pytest.exit(f"--target {address}: cannot connect ({exc}); is the KMS host running there?", returncode=4)
        yield Target(host, port, control=channel, **common)
        return
    group = pytestconfig.getoption("--host-key-group")
    # the embedded host carries the declared key group, so `--host-key-group server-b` checks Table 2 for it
    thread = HostThread(HostConfig(port=0, control=False, key_group=None if group == "auto" else group))
    host, port = thread.start()
    channel = ControlChannel(lambda command: thread.call(thread.host.control, command))
    try:
        yield Target(host, port, embedded=True, control=channel, **common)
    finally:
        thread.stop()


@pytest.fixture(scope="session")
def client_run(pytestconfig: pytest.Config):
    """What the client under test sent; client checks skip without --client-cmd, saying so."""
    command = pytestconfig.getoption("--client-cmd")
    if not command and not pytestconfig.getoption("--target"):
        # the embedded run checks the reference client too
        command = f"{shlex.quote(sys.executable)} -m conformance.cli activate {{host}}:{{port}} --product '{REFERENCE_CLIENT_PRODUCT}'"
    if not command:
        pytest.skip(reason='client conformance checks need a client to test: --client-cmd "COMMAND {host} {port}"')
    from .client_mode import run_client

    try:
        run = run_client(command, timeout=pytestconfig.getoption("--target-timeout") * 6)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    if not run.requests:
        pytest.fail(f"the client sent no KMS request the host could decode (exit {run.returncode}):\n"
                    f"{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    return run


@dataclass
class DnsDeployment:
    domain: str
    server: tuple[str, int]
    port: int


@pytest.fixture(scope="session")
def dns_deployment(pytestconfig: pytest.Config, kms_target):
    """The deployment whose DNS the KMS-DNS checks audit; the embedded run publishes into a lab named."""
    from conformance.cli import UsageError, parse_address

    domain = pytestconfig.getoption("--dns-domain")
    if domain:
        server = pytestconfig.getoption("--dns-server")
        if not server:
            raise pytest.UsageError("--dns-domain needs --dns-server HOST:PORT")
        try:
            yield DnsDeployment(domain, parse_address(server, 53), pytestconfig.getoption("--dns-port"))
        except UsageError as exc:
            raise pytest.UsageError(str(exc)) from None
        return
    from conformance.dns.lab import DnsLab, find_named
    from conformance.reference.discovery import Publisher, PublishTarget

    if not kms_target.embedded:
        pytest.skip(reason="DNS checks need --dns-domain DOMAIN --dns-server HOST:PORT for a target's deployment")
    if find_named() is None:
        pytest.skip(reason="DNS checks of the embedded host need BIND's named (Debian bind9; `make setup` installs it)")
    with DnsLab(zones=("kms.test",)) as lab:
        published = Publisher(lab.address, "kms", kms_target.host, kms_target.port, [PublishTarget("kms.test")]).publish()
        if not all(ok for _, ok, _ in published):
            raise RuntimeError(f"could not publish the embedded host in the lab named: {published}")
        yield DnsDeployment("kms.test", lab.address, kms_target.port)


@pytest.fixture
def control(kms_target):
    """The control channel; checks that need it skip on targets without one, saying so."""
    if kms_target.control is None:
        pytest.skip(reason="needs control over the host's clock and client table: only the reference host started "
                    "with `kmsconf host --control` (and --control HOST:PORT here) offers that")
    channel = kms_target.control
    channel.on_clock = lambda offset: setattr(kms_target, "clock_offset", offset)
    yield channel
    channel.reset()  # later checks meet a fresh host on real time


def _verdict(report: pytest.TestReport, call) -> tuple[str, str]:
    if report.skipped:
        if hasattr(report, "wasxfail"):
            return "xfail", report.wasxfail
        message = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if message.startswith("Skipped: "):
            message = message[len("Skipped: "):]
        if message.startswith(INCONCLUSIVE_PREFIX):
            return "inconclusive", message[len(INCONCLUSIVE_PREFIX):]
        return "skip", message
    if report.failed:
        if hasattr(report, "wasxfail"):
            return "xpass", f"passed, but was expected to fail: {report.wasxfail}"
        text = str(call.excinfo.value) if call is not None and call.excinfo else str(report.longrepr)
        return "fail", text
    return "pass", ""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    clause = _clause_of(item)
    if clause is None:
        return
    if call.excinfo is not None and call.excinfo.errisinstance(Inconclusive):
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, INCONCLUSIVE_PREFIX + str(call.excinfo.value))
    deviation = item.config._kms_expect.get(clause.id)
    if deviation is not None and report.when == "call" and report.failed:
        if deviation.text in str(call.excinfo.value if call.excinfo else ""):
            report.outcome = "skipped"
            report.wasxfail = f"{deviation.reason}"
    if report.when == "call" or (report.when == "setup" and (report.skipped or report.failed)):
        verdict, message = _verdict(report, call)
        # gathered by _ReportCollector from the report, in this process or on the xdist controller
        report.user_properties.append((VERDICT_PROPERTY, json.dumps(
            {"clause": clause.id, "verdict": verdict, "message": message.strip()})))
    if report.when == "teardown" and item.stash.get(EVIDENCE_KEY, None):
        report.user_properties.append((EVIDENCE_PROPERTY, json.dumps(
            {"clause": clause.id, "files": item.stash[EVIDENCE_KEY]})))


def _clause_verdict(config: pytest.Config, cid: str, results: list[tuple[str, str]]) -> str:
    verdict = min((v for v, _ in results), key=VERDICT_ORDER.index)
    if cid in config._kms_expect and verdict == "pass":
        return "xpass"  # declared to fail, yet no check of the clause failed: the declaration is stale
    return verdict


def clause_records(config: pytest.Config) -> list[dict]:
    records = []
    for cid, results in sorted(config._kms_results.items()):
        clause = clause_registry.get(cid)
        verdict = _clause_verdict(config, cid, results)
        if verdict == "xpass" and not any(v == "xpass" for v, _ in results):
            results = results + [("xpass", f"passed, but declared to fail: {config._kms_expect[cid].reason}")]
        message = next((m for v, m in results if v == verdict and m), "")
        records.append({"clause": cid, "title": clause.title, "area": clause.area, "level": clause.level,
                        "ref": clause.ref, "verdict": verdict, "message": message[:4000],
                        "target": config._kms_target_name, "evidence": config._kms_evidence.get(cid, [])})
    return records


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """An unexpected pass of a declared deviation fails the run, as tlsfuzzer's XPASS does."""
    config = session.config
    stale = [cid for cid, results in config._kms_results.items() if _clause_verdict(config, cid, results) == "xpass"]
    if stale and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if is_xdist_worker(config):
        return  # the controller has every worker's verdicts and writes the reports
    write_fuzz_report(terminalreporter, config)
    records = clause_records(config)
    path = Path(config.getoption("--summary"))
    if not path.is_absolute():
        path = Path(config.rootpath) / path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    if not records:
        return
    tr = terminalreporter
    tr.section(f"KMS conformance: {config._kms_target_name}")
    by_area: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        by_area[record["area"]].append(record)
    for area, rows in by_area.items():
        counts = {v: [r["clause"] for r in rows if r["verdict"] == v] for v in VERDICT_ORDER}
        summary = ", ".join(f"{len(ids)} {v}" for v, ids in counts.items() if ids)
        tr.write_line(f"{area:<6} {clause_registry.AREAS[area]:<40} {summary}")
        for verdict in ("fail", "xpass", "inconclusive"):
            for cid in counts[verdict]:
                tr.write_line(f"         {verdict.upper():<12} {cid}")
    tr.write_line(f"summary written to {path}")


def write_fuzz_report(terminalreporter, config: pytest.Config) -> None:
    """Merge the fuzz shards of this run into --fuzz-report, with one summary line."""
    if not config._kms_fuzz_shards:
        return
    from conformance.fuzz.campaign import merge, summary_line, write_report

    report = merge(config._kms_fuzz_shards)
    path = write_report(fuzz_report_path(config), report)
    terminalreporter.write_line(f"{summary_line(report)}; report {path}")
