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
AFTER_WELL_FORMED = ("KMS-THR-005",)  # judges every count the well-formed checks were answered
LAST = ("KMS-ROB-001",)  # the host after every negative check


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kms-conformance")
    group.addoption("--intrusive", action="store_true", default=False,
                    help="on a target outside loopback, also run the clauses that add clients to its count, "
                         "send malformed input or fuzz it (a staging host, never production)")
    # tests only: treat a loopback target as remote, to prove the footprint rules without a second machine
    group.addoption("--assume-remote", action="store_true", default=False, help=argparse.SUPPRESS)


def pytest_configure(config: pytest.Config) -> None:
    for area in clause_registry.AREAS:
        config.addinivalue_line("markers", f"{area.lower()}: checks of the {clause_registry.AREAS[area]} area")
    for name, meaning in clause_registry.FOOTPRINTS.items():
        config.addinivalue_line("markers", f"{name}: footprint: {meaning}")
    config.addinivalue_line("markers", "clause(id): the conformance clause a check enforces")


def clause_of(item: pytest.Item) -> clause_registry.Clause | None:
    marker = item.get_closest_marker("clause")
    return clause_registry.get(marker.args[0]) if marker else None


def target_is_remote(config: pytest.Config) -> bool:
    target = run_of(config).settings.target
    return target is not None and (config.getoption("--assume-remote") or not is_loopback(target[0]))


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
        keep = [i for i in items if (c := clause_of(i)) is not None and c.area == "CLI"]
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep
    patterns = run.settings.clause_patterns
    if patterns:
        wanted = {c.id for p in patterns for c in clause_registry.select(p)}
        keep = [i for i in items if (c := clause_of(i)) is not None and c.id in wanted]
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep
    explicit = bool(patterns or config.getoption("-m") or config.getoption("--intrusive"))
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
        elif remote and not explicit and clause.footprint != "safe":
            why = (f"{clause.footprint} clause left out on a target outside loopback: "
                   f"{clause_registry.FOOTPRINTS[clause.footprint]} (run it with --intrusive against a staging host)")
            run.left_out[clause.id] = clause.footprint
            item.add_marker(pytest.mark.skip(reason=why))
    items.sort(key=_order)


def _order(item: pytest.Item) -> int:
    """Counting deltas first; malformed input and fuzzing after every well-formed check, so a fragile host
    that falls over has given its other verdicts first; ROB-001 last of all."""
    clause = clause_of(item)
    if clause is None:
        return 1
    if clause.id in FIRST:
        return 0
    if clause.id in AFTER_WELL_FORMED:
        return 2
    if clause.id in LAST:
        return 4
    return 3 if clause.footprint in ("malformed", "fuzz") else 1
