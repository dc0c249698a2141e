"""The host's life under the suite: a known, empty client table and a moved clock for the clauses that need
them, and a host that dies under the suite reported once, as KMS-ROB-006, instead of a column of failures.

Two means put a host in a known state: the reference host's control channel (`--control`, the fast path)
and a host the suite starts itself (`--target-cmd`), which a fresh start empties and libfaketime's clock
moves. After every check the suite looks whether the host died: with `--target-cmd` the process monitor
says (its signal, a sanitizer report), the host is started again and the check runs once more on it; with
a plain `--target` a connection that cannot open means the host is down, and the checks after it say they
could not run.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import pytest

from conformance.net.address import format_address, reachable

from .evidence import HostWentDown, Inconclusive
from .profile import NotServed
from .run import VERDICT_PROPERTY, run_of
from .selection import clause_of, is_clock_check

DEATH_CLAUSE = "KMS-ROB-006"
DOWN_KEY = pytest.StashKey[dict]()  # the host went down in this process: the ROB-006 record that says so
DEATHS_KEY = pytest.StashKey[list]()  # every death this process saw (ROB-006's records), for the clause's own check
RERUN_KEY = pytest.StashKey[bool]()  # this check's first run was cut off by a death: run it once more
_LIFE_KEY = pytest.StashKey[object]()  # the run's StartedLife, for the hooks that run before fixtures
_RERUN_DONE = pytest.StashKey[bool]()  # ... and it has been: a second death on it is not run a third time
DYING = 0.2  # seconds a host whose connection was reset may take to stop accepting, if it is dying


class ControlledLife:
    """The reference host's control channel: an empty table and a clock offset in one command each."""

    means = "control"

    def __init__(self, channel, target):
        self.channel, self.target = channel, target
        channel.on_clock = lambda offset: setattr(target, "clock_offset", offset)

    def touched(self) -> None:
        pass

    def reset(self) -> None:
        self.channel.reset()

    def fresh_problem(self) -> str | None:
        return None

    def clock_problem(self) -> str | None:
        return None

    def advance(self, seconds: float) -> None:
        self.channel.advance(seconds)

    def after_check(self) -> None:
        self.channel.reset()  # later checks meet a fresh host on real time, as before the check

    def clock_back(self) -> None:
        self.channel.reset()


class StartedLife:
    """A host the suite started (`--target-cmd`): a fresh start empties it, libfaketime moves its clock."""

    means = "start"

    def __init__(self, managed, target, config: pytest.Config | None = None):
        self.managed, self.target = managed, target
        self._forgets: str | None | bool = False  # not yet measured
        if config is not None:
            config.stash[_LIFE_KEY] = self  # for the setup hook, which runs before any fixture

    def touched(self) -> None:
        self.managed.dirty = True

    def reset(self) -> None:
        self.managed.fresh()
        self.target.clock_offset = 0.0

    def fresh_problem(self) -> str | None:
        """None when a fresh start empties the host's table: always with {dir}; without it, measured once (a
        client before a restart, another after: count 1 again, or the first one was kept)."""
        if self.managed.command.has_dir:
            return None
        if self._forgets is False:
            self._forgets = self._measure_forgetting()
        return self._forgets

    def _measure_forgetting(self) -> str | None:
        target = self.target
        self.reset()
        before = target.activate(target.request(fresh=True))
        self.managed.restart()
        after = target.activate(target.request(fresh=True))
        self.managed.dirty = True
        if before.response is None or after.response is None:
            return None  # the clauses themselves will say what the host answers
        first, second = before.response.response.count, after.response.response.count
        if second > first:
            return (f"a restart keeps the host's clients (count {first} before, {second} after it for a new "
                    f"client), and the command has no {{dir}}: put {{dir}} where the host keeps its state (e.g. "
                    f"--db {{dir}}/host.sqlite) so that each fresh start is empty")
        return None

    def clock_problem(self) -> str | None:
        why = self.managed.clock_unavailable()
        if why is None:  # under libfaketime now: does it still serve as it did?
            result = self.target.alive()
            if not result.outcome.is_kms_answer:
                why = (f"the host does not answer under libfaketime ({result.outcome.describe()}): no clause can be "
                       f"judged on its moved clock")
        return why

    def advance(self, seconds: float) -> None:
        self.target.clock_offset = self.managed.advance(seconds)

    def after_check(self) -> None:
        pass  # a fresh start is made when the next check needs one, not after every check

    def clock_back(self) -> None:
        """Real time again, without a restart (what the table holds now is stamped in its future)."""
        if self.managed.clock is not None and self.managed.clock_offset:
            self.managed.clock.set(0.0)
        self.target.clock_offset = 0.0


def life_of(target) -> ControlledLife | StartedLife | None:
    return target.life


@pytest.fixture
def fresh_host(kms_target):
    """A means to empty the host's client table (`.reset()`); skips where there is none, saying so."""
    life = life_of(kms_target)
    if life is None:
        pytest.skip(reason="needs a known, empty client table: start the host with --target-cmd \"COMMAND {port}\" "
                    "(the suite starts it fresh) or use the reference host's --control")
    why = life.fresh_problem()
    if why:
        raise Inconclusive(why)
    yield life
    life.after_check()


@pytest.fixture
def host_clock(kms_target):
    """A means to move the host's clock (`.advance(seconds)`); never a clock that did not move. Real time again
    after the check."""
    life = life_of(kms_target)
    if life is None:
        pytest.skip(reason="needs to move the host's clock: start the host with --target-cmd \"COMMAND {port}\" "
                    "(libfaketime moves it) or use the reference host's --control")
    why = life.clock_problem()
    if why and "not installed" in why:
        pytest.skip(reason=f"needs to move the host's clock: {why}")
    if why:
        raise Inconclusive(why)
    yield life
    life.clock_back()


# --- a host that dies ---

def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_DeathWatch(), "kms-host-deaths")


class _DeathWatch:
    """The hooks that watch the host over each check: skip when it is down, libfaketime off, deaths, reruns."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        down = item.config.stash.get(DOWN_KEY, None)
        clause = clause_of(item)
        if down is not None and clause is not None and clause.id != DEATH_CLAUSE:
            pytest.skip(reason=f"not run: the host is down ({down['message']}; see {DEATH_CLAUSE})")
        managed = getattr(item.config.stash.get(_LIFE_KEY, None), "managed", None)
        if managed is not None and managed.clocked and not is_clock_check(item):
            managed.use_clock(False)  # libfaketime only where a clock is needed: its own bugs stay there

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item):
        error: BaseException | None = None
        try:
            result = yield
        except BaseException as exc:  # judged below: was it the host's death, not the clause?
            error = exc
        target = getattr(item, "funcargs", {}).get("kms_target")
        if item.config.stash.get(DOWN_KEY, None) is not None:
            target = None  # already known to be down, and said so: nothing more to find out
        # a check the host gives nothing to judge (a skip, inconclusive, nothing served) is no sign of a death
        failed = error is not None and not isinstance(error, (pytest.skip.Exception, Inconclusive, NotServed))
        record = None if target is None or clause_of(item) is None else died_during(item, target, failed)
        if record is not None:
            raise HostWentDown(record) from error
        if error is not None:
            raise error
        return result

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None):
        """A check cut off by the host's death runs once more on the restarted host (with --target-cmd)."""
        if not run_of(item.config).settings.target_cmd:
            return None  # pytest's own protocol: nothing here restarts a host
        from _pytest.runner import runtestprotocol

        item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        reports = runtestprotocol(item, nextitem=nextitem, log=False)
        if item.stash.get(RERUN_KEY, False):
            item.stash[RERUN_KEY] = False
            item.stash[_RERUN_DONE] = True
            deaths = [p for r in reports if r.when == "call" for p in r.user_properties
                      if p[0] == VERDICT_PROPERTY and json.loads(p[1])["clause"] == DEATH_CLAUSE]
            item.user_properties[:] = [p for p in item.user_properties if p[0] != "verdict"]
            item._initrequest()  # the check's own fixtures are set up again
            reports = runtestprotocol(item, nextitem=nextitem, log=False)
            for report in reports:
                if report.when == "call":  # the first death first: it is the one the clause names
                    report.user_properties[:0] = [p for p in deaths if p not in report.user_properties]
        for report in reports:
            item.ihook.pytest_runtest_logreport(report=report)
        item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True


def died_during(item: pytest.Item, target, failed: bool = False) -> dict | None:
    """The ROB-006 record when the host died or went down during this check, else None. A host the suite does
    not run is asked whether it still accepts connections after a check that failed or could not connect."""
    life = life_of(target)
    managed = getattr(life, "managed", None)
    if managed is not None:
        deaths = managed.deaths()
        if deaths:
            return _record_death(item, target, "; ".join(d.what for d in deaths),
                                 [line for d in deaths for line in d.excerpt], restart=True)
    if not (target.connect_errors or failed):
        return None
    if not target.connect_errors:
        time.sleep(DYING)  # a failure by a reset can be a host in the middle of dying
    refused = reachable((target.host, target.port), target.timeout)
    if refused is None:
        return None
    return _record_death(item, target, f"the host stopped accepting connections ({refused})", [],
                         restart=managed is not None)





def _record_death(item: pytest.Item, target, what: str, excerpt: list[str], restart: bool) -> dict:
    clause = clause_of(item)
    connections = culprit(target.recorded)
    evidence = _write_culprit(item, target, connections)
    replay = replay_command(item.config, evidence) if evidence else None
    record = {"clause": DEATH_CLAUSE, "check": item.nodeid, "verdict": "fail",
              "message": f"{what} during {clause.id} ({item.name})",
              "expected": "the host keeps serving: no crash, abort or sanitizer report",
              "actual": what,
              "detail": "; ".join(filter(None, [
                  f"during {item.nodeid}",
                  f"the last exchange: {_describe(connections[-1] if connections else [])}",
                  f"pcap: {evidence}" if evidence else None,
                  f"replay: {replay}" if replay else None,
                  ("the host's output: " + " | ".join(line for line in excerpt if line.strip())[-1500:])
                  if excerpt else None]))}
    managed = getattr(target.life, "managed", None)
    if restart and managed is not None and not item.stash.get(_RERUN_DONE, False):
        managed.recover()
        item.stash[RERUN_KEY] = True  # cut off: run it again on the restarted host
    elif restart and managed is not None:
        managed.recover()  # it died again on the same check: the rest of the run goes on regardless
        record["message"] += " (again, on the restarted host)"
    else:
        item.config.stash[DOWN_KEY] = record
    item.config.stash.setdefault(DEATHS_KEY, []).append(record)
    return record


def culprit(transcripts: list) -> list:
    """The check's connections up to the one that most likely killed the host: the first the host never
    answered (it died reading it), else the last that carried bytes. A connection that could not open leaves
    an empty transcript. Replayed in order, they take the host the way the check did."""
    sent = [t for t in transcripts if t]
    for n, transcript in enumerate(sent):
        if not any(side == "host" for side, _ in transcript):
            return sent[: n + 1]
    return sent


def _describe(transcript: list) -> str:
    if not transcript:
        return "a TCP connection opened and closed without a byte sent"
    from conformance.pcap.decode import describe_transcript

    decoded = describe_transcript(transcript)
    return " / ".join(decoded[:3]) if decoded else f"{len(transcript)} PDUs"


def _write_culprit(item: pytest.Item, target, connections: list) -> str | None:
    if not connections:
        return None
    from conformance.pcap.writer import write_pcap

    from .verdicts import summary_path

    directory = item.config.getoption("--evidence-dir")
    folder = Path(directory) if directory else summary_path(item.config).parent / "host-deaths"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{DEATH_CLAUSE}-{clause_of(item).id}-{item.name}.pcap".replace("/", "_")
    write_pcap(path, connections, host=(target.host, target.port))
    return str(path)


def replay_command(config: pytest.Config, pcap: str) -> str:
    settings = run_of(config).settings
    if settings.target_cmd:
        return f"kmsconf fuzz --replay {shlex.quote(pcap)} --target-cmd {shlex.quote(settings.target_cmd)}"
    return f"kmsconf replay {shlex.quote(pcap)} --target {format_address(*settings.target)}"


def probe_death(config: pytest.Config, target: tuple[str, int], why: str) -> None:
    """The reachability probe killed the host (an empty connection, then nothing listens): one ROB-006 finding,
    and every other check says it could not run."""
    record = {"clause": DEATH_CLAUSE, "check": "(reachability probe)", "verdict": "fail",
              "message": f"the host stopped accepting connections ({why}) after the suite's reachability probe",
              "expected": "the host keeps serving: no crash, abort or sanitizer report",
              "actual": f"down after an empty connection ({why})",
              "detail": f"the last exchange: a TCP connection to {format_address(*target)} opened and closed without "
                        f"a byte sent (what a port scan does); nothing accepted a connection there afterwards"}
    config.stash[DOWN_KEY] = record  # pytest_configure has not run yet: the run object comes after

