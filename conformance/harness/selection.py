"""Which checks run, and in what order: --clause, markers per area and footprint, profiles, production safety.

Every check carries markers for its area (`-m rpc`, `-m thr`, ...) and its footprint
(`-m safe`, `-m counting`, `-m malformed`, `-m fuzz`), so a user can run one area as h2spec
runs one section. A target outside loopback runs only `safe` clauses unless the user asks
for more (`--intrusive`, or an explicit `-m` or `--clause`).
"""

from __future__ import annotations

import argparse

import pytest

from conformance.net.address import is_loopback

from . import clauses as clause_registry
from .run import run_of

FIRST = ("KMS-THR-001", "KMS-THR-002")  # count deltas, before the run's own traffic moves the count
SIMULTANEOUS = ("KMS-MSG-010",)  # next: once it passed, the phases of independent requests go at once (phases)
AFTER_WELL_FORMED = ("KMS-THR-005",)  # judges every count the well-formed checks were answered
LAST = ("KMS-ROB-001", "KMS-ROB-006")  # the host after every negative check, then whether it stayed up


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kms-conformance")
    group.addoption("--intrusive", action="store_true", default=False,
                    help="on a target outside loopback, also run the clauses that add clients to its count, "
                         "send malformed input or fuzz it (a staging host, never production)")
    group.addoption("--safe-only", action="store_true", default=False,
                    help="run only the safe clauses whatever the target's address: a production host reached "
                         "through a tunnel or port-forward on loopback")
    # tests only: treat a loopback target as remote, to prove the footprint rules without a second machine
    group.addoption("--assume-remote", action="store_true", default=False, help=argparse.SUPPRESS)


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_Order(), "kms-order")
    for area in clause_registry.AREAS:
        config.addinivalue_line("markers", f"{area.lower()}: checks of the {clause_registry.AREAS[area]} area")
    for name, meaning in clause_registry.FOOTPRINTS.items():
        config.addinivalue_line("markers", f"{name}: footprint: {meaning}")
    config.addinivalue_line("markers", "clause(id): the conformance clause a check enforces")


def pytest_report_header(config: pytest.Config) -> str | None:
    if config.getoption("--safe-only") and config.getoption("--intrusive"):
        return "kms-conformance: --safe-only wins over --intrusive: only the safe clauses run"
    return None


def clause_of(item: pytest.Item) -> clause_registry.Clause | None:
    marker = item.get_closest_marker("clause")
    return clause_registry.get(marker.args[0]) if marker else None


def is_clock_check(item: pytest.Item) -> bool:
    """Does this check move the host's clock (the host_clock fixture, or a "moved" variant)?"""
    params = getattr(getattr(item, "callspec", None), "params", {})
    return "host_clock" in getattr(item, "fixturenames", ()) or params.get("clock") == "moved"


def target_is_remote(config: pytest.Config) -> bool:
    """A host that may be production: outside loopback, or said to be (--safe-only)."""
    target = run_of(config).settings.target
    if config.getoption("--safe-only"):
        return True
    return target is not None and (config.getoption("--assume-remote") or not is_loopback(target[0]))


def asked_for(config: pytest.Config, clause: clause_registry.Clause) -> bool:
    """Did the user ask for this intrusive clause in so many words: --intrusive, its footprint named in -m, or
    its id given to --clause? An area or a pattern only narrows the run; --safe-only wins over all of them."""
    if config.getoption("--safe-only"):
        return False
    if config.getoption("--intrusive"):
        return True
    expression = config.getoption("-m") or ""
    named = {word for word in expression.replace("(", " ").replace(")", " ").split()}
    if clause.footprint in named and f"not {clause.footprint}" not in " ".join(expression.split()):
        return True
    return clause.id in {p.strip().upper() for p in run_of(config).settings.clause_patterns}


@pytest.hookimpl(tryfirst=True)  # markers first: pytest's -m deselection runs after this
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run = run_of(config)
    for item in items:
        clause = clause_of(item)
        if clause is None:
            continue
        item.add_marker(getattr(pytest.mark, clause.area.lower()))
        item.add_marker(getattr(pytest.mark, clause.footprint))
        item.user_properties.append(("clause", clause.id))
    if run.settings.client_only:  # the client is under test: the embedded host's own clauses are not the question
        keep = [i for i in items if (c := clause_of(i)) is not None and c.area in ("CLI", "DISC")]
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep
    patterns = run.settings.clause_patterns
    if patterns:
        wanted = {c.id for p in patterns for c in clause_registry.select(p)}
        keep = [i for i in items if (c := clause_of(i)) is not None and c.id in wanted]
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep
    remote = target_is_remote(config)
    fuzzing = "fuzz" in (config.getoption("-m") or "")
    profile = run.settings.profile
    for item in items:
        clause = clause_of(item)
        if "fuzz" in item.keywords and not fuzzing:
            item.add_marker(pytest.mark.skip(reason="fuzz campaign: run with -m fuzz"))
        if clause is None:
            continue
        if profile not in clause.profiles:
            item.add_marker(pytest.mark.skip(reason=f"{clause.id} does not apply to the {profile} profile"))
        elif remote and clause.footprint != "safe" and not asked_for(config, clause):
            where = "with --safe-only" if config.getoption("--safe-only") else "on a target outside loopback"
            why = (f"{clause.footprint} clause left out {where}: {clause_registry.FOOTPRINTS[clause.footprint]} "
                   f"(run it with --intrusive against a staging host)")
            run.left_out[clause.id] = clause.footprint
            item.add_marker(pytest.mark.skip(reason=why))


class _Order:
    """The run's order, set last: after any plugin that reorders (randomisation) has had its turn."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        items.sort(key=_order)


def _order(item: pytest.Item) -> float:
    """Counting deltas first, then simultaneous clients; malformed input and fuzzing after every well-formed
    check, so a fragile host that falls over has given its other verdicts first; ROB-001 and ROB-006 last."""
    clause = clause_of(item)
    if clause is None:
        return 2
    if clause.id in FIRST:
        return 0
    if clause.id in SIMULTANEOUS:
        return 1
    if clause.id in AFTER_WELL_FORMED:
        return 3
    if is_clock_check(item):  # side by side: a host the suite runs is started with libfaketime once for them all
        return 2.5
    if clause.id in LAST:
        return 5 + LAST.index(clause.id)
    return 4 if clause.footprint in ("malformed", "fuzz") else 2
