"""Discovery conformance: the scenarios a client under test is run in, and running them (KMS-DISC-*).

The lab's zones are the scenarios (conformance/harness/discovery_lab.py): one host to find (names),
a low priority before a high one (priority), two weights (weight), a chosen host that fails
(failover), a cached host that DNS stops advertising and then fails (cache), and a host given by
hand next to advertised records (manual). Each scenario runs when a check first asks for it; a
client that hangs is killed, and no later scenario runs it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from conformance.dns.namespace import unavailable as namespace_unavailable
from conformance.harness import clauses, multinomial

from .client_process import placeholders
from .discovery_lab import ANSWERS, REFUSES, SILENT, DiscoveryLab, DiscoveryRun, HostSpec, Scenario
from .evidence import Inconclusive


def weight_hosts() -> dict[str, int]:
    return dict(clauses.get("KMS-DISC-003").expect["weights"])


def weight_test(first_contacts: list[str | None]) -> tuple[dict[str, int], dict[str, float], float]:
    """KMS-DISC-003's test of the runs' first contacts: (counts, the shares the weights give, exact p-value)."""
    weights = weight_hosts()
    shares = {name: w / sum(weights.values()) for name, w in weights.items()}
    counts = dict.fromkeys(weights, 0)
    for first in first_contacts:
        if first in counts:
            counts[first] += 1
    return counts, shares, multinomial.p_value(counts, shares) if sum(counts.values()) else 1.0


def scenarios() -> tuple[Scenario, ...]:
    weights = weight_hosts()
    return (
        Scenario("names", (HostSpec("kms1", ANSWERS),)),
        # a priority-ignoring client goes to the heavy priority-10 hosts; the refusing low one tests "all failed"
        Scenario("priority", (HostSpec("low", ANSWERS, 0, 1), HostSpec("low-down", REFUSES, 0, 1),
                              HostSpec("high1", ANSWERS, 10, 100), HostSpec("high2", ANSWERS, 10, 100),
                              HostSpec("high3", ANSWERS, 10, 100))),
        Scenario("weight", tuple(HostSpec(name, ANSWERS, 0, weight) for name, weight in weights.items())),
        # the failing hosts are heavy, so even a client that ignores priority meets them first
        Scenario("failover", (HostSpec("refuses", REFUSES, 0, 30000), HostSpec("silent", SILENT, 0, 30000),
                              HostSpec("backup", ANSWERS, 10, 0))),
        Scenario("cache", (HostSpec("x", ANSWERS, 0, 1), HostSpec("y", ANSWERS, 0, 1),
                           HostSpec("z", ANSWERS, 0, 1, listed=False))),
        Scenario("manual", (HostSpec("given", ANSWERS, listed=False), HostSpec("advertised", ANSWERS))),
    )


class NotRun(Inconclusive):
    """A scenario not run because the client hung in an earlier one."""


@dataclass
class CacheRuns:
    """The three activations of a stateful client: first, after DNS moved, after its cached host failed."""

    first: DiscoveryRun
    cached: str | None  # the host it activated at first
    moved: DiscoveryRun | None = None
    failed: DiscoveryRun | None = None

    @property
    def runs(self) -> list[DiscoveryRun]:
        return [r for r in (self.first, self.moved, self.failed) if r is not None]


@dataclass
class DiscoveryRuns:
    """The discovery world of one session, started on first use; every scenario's runs, kept."""

    command: str | None  # a client that discovers ({domain}), or None
    manual_command: str | None  # a client given its host ({host}:{port}), or None
    timeout: float
    weight_runs: int
    use_namespace: bool = True  # False: never the namespace (tests of the loopback world)
    _lab: DiscoveryLab | None = None
    _runs: dict[str, object] = field(default_factory=dict)
    hung: DiscoveryRun | None = None
    _scenarios: dict[str, Scenario] = field(default_factory=lambda: {s.name: s for s in scenarios()})

    # --- the world ---
    def _namespace_needed(self) -> bool:
        return "dns" not in placeholders(self.command or "")

    def lab(self, system_resolver: bool) -> DiscoveryLab:
        why = namespace_unavailable() if self.use_namespace else "is turned off (--disc-no-namespace)"
        if system_resolver and why:
            pytest.skip(reason=f"the client uses the system resolver (no {{dns}} in --client-cmd): its lab runs in "
                               f"a private network namespace, which {why}")
        if self._lab is None:
            from conformance.dns.lab import find_named

            if find_named() is None:
                pytest.skip(reason="client discovery checks need BIND's named (Debian bind9; `make setup` installs it)")
            self._lab = DiscoveryLab(tuple(self._scenarios.values()), namespace=why is None,
                                     search=self._scenarios["manual"].domain).start()
        return self._lab

    def stop(self) -> None:
        if self._lab is not None:
            self._lab.stop()
            self._lab = None

    def _discovering(self) -> str:
        if not self.command:
            pytest.skip(reason="discovery checks need a client that finds its host: --client-cmd \"COMMAND {domain}\" "
                               "(and {dns} where it takes a DNS server's HOST:PORT)")
        return self.command

    def _run(self, scenario: str, command: str, system_resolver: bool, **where: object) -> DiscoveryRun:
        if self.hung is not None:
            raise NotRun(f"not run: the client hung in the {self.hung.scenario.name!r} scenario and was killed "
                         f"after {self.hung.process.timeout:g} s")
        lab = self.lab(system_resolver)
        if "state" in placeholders(command) and "state" not in where:
            where["state"] = lab.state_dir()  # a stateful client starts afresh in every scenario but the cache one
        run = lab.run(self._scenarios[scenario], command, self.timeout, **where)
        if run.process.hung:
            self.hung = run
        return run

    def _cached(self, key: str, make):
        if key not in self._runs:
            self._runs[key] = make()
        return self._runs[key]

    def repeat(self, scenario: str, times: int) -> list[DiscoveryRun]:
        """`times` runs of the discovering client (fewer if it hangs: the hung run is the last)."""
        command = self._discovering()
        runs: list[DiscoveryRun] = []
        for _ in range(times):
            runs.append(self._run(scenario, command, self._namespace_needed()))
            if runs[-1].process.hung:
                break
        return runs

    # --- the scenarios, as the checks ask for them ---
    def names(self) -> DiscoveryRun:
        return self._cached("names", lambda: self.repeat("names", 1)[0])

    def priority(self) -> list[DiscoveryRun]:
        return self._cached("priority", lambda: self.repeat("priority", clauses.get("KMS-DISC-002").expect["runs"]))

    def weight(self) -> list[DiscoveryRun]:
        return self._cached("weight", lambda: self.repeat("weight", self.weight_runs))

    def failover(self) -> list[DiscoveryRun]:
        """Runs until one whose first choice failed (a host that answered first tests no failover)."""
        def runs() -> list[DiscoveryRun]:
            out: list[DiscoveryRun] = []
            for _ in range(clauses.get("KMS-DISC-004").expect["attempts"]):
                out += self.repeat("failover", 1)
                scenario = self._scenarios["failover"]
                first = out[-1].first_contact
                if out[-1].process.hung or first is None or scenario.spec(first).kind != ANSWERS:
                    break
            return out
        return self._cached("failover", runs)

    def cache(self) -> CacheRuns:
        return self._cached("cache", self._cache_rounds)

    def _cache_rounds(self) -> CacheRuns:
        command = self._discovering()
        lab = self.lab(self._namespace_needed())
        if "state" not in placeholders(command):
            pytest.skip(reason="a one-shot client: every run starts afresh, so a cached host cannot be observed "
                               "(a client that keeps its KMS host between runs names its state directory with "
                               "{state} in --client-cmd)")
        scenario = self._scenarios["cache"]
        state = lab.state_dir()
        first = self._run("cache", command, self._namespace_needed(), state=state)
        rounds = CacheRuns(first, first.activated[0] if first.activated else None)
        if first.process.hung or rounds.cached is None:
            return rounds
        other = next(h.name for h in scenario.hosts if h.listed and h.name != rounds.cached)
        # DNS now prefers the other host: a client that asks DNS again goes there, a caching one does not
        lab.publish(scenario, {rounds.cached: (10, 1), other: (0, 1)})
        rounds.moved = self._run("cache", command, self._namespace_needed(), state=state)
        if rounds.moved.process.hung:
            return rounds
        # the cached host goes down and DNS names a new one instead of the other: only a fresh query finds it
        lab.host(scenario, rounds.cached).fail()
        lab.publish(scenario, {rounds.cached: (10, 1), "z": (0, 1)})
        rounds.failed = self._run("cache", command, self._namespace_needed(), state=state)
        return rounds

    def manual(self) -> DiscoveryRun:
        if not self.manual_command:
            pytest.skip(reason="judged on a client given its host by hand: --client-cmd \"COMMAND {host}:{port}\" "
                               "(this run's client discovers its host)")
        return self._cached("manual", lambda: self._run("manual", self.manual_command, True, given="given"))

    @property
    def scenario(self) -> dict[str, Scenario]:
        return self._scenarios

