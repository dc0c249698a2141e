"""The registry and the suite agree: every check names a known clause, every clause has a check."""

import ast
from pathlib import Path

import pytest

from conformance.harness import clauses

SUITE = Path(__file__).resolve().parents[1] / "conformance" / "suite"


def suite_checks() -> dict[str, list[str]]:
    """test function name -> clause ids it is marked with, read from the suite's source."""
    found: dict[str, list[str]] = {}
    for path in sorted(SUITE.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                ids = [
                    dec.args[0].value
                    for dec in node.decorator_list
                    if isinstance(dec, ast.Call) and getattr(dec.func, "attr", "") == "clause"
                    and dec.args and isinstance(dec.args[0], ast.Constant)
                ]
                found[f"{path.name}::{node.name}"] = ids
    return found


def test_every_check_names_exactly_one_known_clause():
    registry = clauses.load()
    for name, ids in suite_checks().items():
        assert len(ids) == 1, f"{name} must carry exactly one @pytest.mark.clause, has {ids}"
        assert ids[0] in registry, f"{name} names unknown clause {ids[0]}"


def test_every_clause_has_a_check():
    used = {cid for ids in suite_checks().values() for cid in ids}
    missing = sorted(set(clauses.load()) - used)
    assert not missing, f"clauses without a check: {missing}"


def test_registry_rejects_bad_rows(tmp_path):
    bad = tmp_path / "c.toml"
    bad.write_text('[[clause]]\nid = "KMS-XYZ-001"\ntitle = "t"\nref = "r"\nlevel = "MUST"\n')
    with pytest.raises(ValueError, match="known area"):
        clauses.load.__wrapped__(bad)
    bad.write_text('[[clause]]\nid = "KMS-RPC-001"\ntitle = "t"\nref = "r"\nlevel = "MAY"\n')
    with pytest.raises(ValueError, match="MUST or SHOULD"):
        clauses.load.__wrapped__(bad)


def test_every_clause_is_proven_able_to_fail():
    """Each clause is broken by an entry of a proof table: the faulty host's faults (whole-suite isolation),
    the faulty clients (their requests, discovery and what they make of answers), the broken DNS deployments, the
    fuzz campaign's faulty hosts, the hosts that crash or forget at a restart."""
    import test_answer_clauses_fail
    import test_client_clauses_fail
    import test_discovery_clauses_fail
    import test_dns_clauses_fail
    import test_fuzz
    import test_host_life
    from faults import FAULTS

    proven = {cid for fault in FAULTS for cid in fault.breaks}
    proven |= {cid for _, cid in test_client_clauses_fail.FAULTS}
    proven |= {cid for _, cid in test_discovery_clauses_fail.FAULTS}
    proven |= {cid for _, cid in test_answer_clauses_fail.FAULTS}
    proven |= {cid for _, cid in test_dns_clauses_fail.FAULTS}
    proven |= {cid for _, cid in test_fuzz.FAULTS}
    proven |= {cid for _, cid in test_host_life.FAULTS}
    missing = sorted(set(clauses.load()) - proven)
    assert not missing, f"clauses with no failure proof: {missing}"
    unknown = sorted(proven - set(clauses.load()))
    assert not unknown, f"proof tables name unknown clauses: {unknown}"


def test_readme_catalogue_is_generated_from_the_registry():
    from conformance.cli.suite import clauses_markdown

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("<!-- clauses:start -->\n", 1)[1].split("<!-- clauses:end -->", 1)[0]
    assert block == clauses_markdown(), "README's clause catalogue is stale: paste `kmsconf clauses --markdown`"


def test_every_check_uses_the_means_its_clause_names():
    """A clause judged by a fresh start or a moved clock (`means` in clauses.toml) asks for that means in each
    of its checks (the fixtures fresh_host, host_clock; the timing checks' "moved" variant), and a check asks
    for no means its clause does not name."""
    import importlib
    import inspect
    import pkgutil

    import conformance.suite

    uses: dict[str, set[str]] = {}
    for module_info in pkgutil.iter_modules(conformance.suite.__path__):
        module = importlib.import_module(f"conformance.suite.{module_info.name}")
        for name, function in inspect.getmembers(module, inspect.isfunction):
            marks = [m for m in getattr(function, "pytestmark", []) if m.name == "clause"]
            if not name.startswith("test_") or not marks:
                continue
            params = set(inspect.signature(function).parameters)
            means = {"fresh"} if params & {"fresh_host", "known_state_if_possible"} else set()
            means |= {"clock"} if params & {"host_clock", "clock"} else set()
            means |= {"restart"} if ".managed.restart(" in inspect.getsource(function) else set()
            uses.setdefault(marks[0].args[0], set()).update(means)
    for cid, clause in clauses.load().items():
        named = set(clause.means) - {"answers"}
        assert uses.get(cid, set()) == named, (cid, sorted(uses.get(cid, set())), sorted(named))
