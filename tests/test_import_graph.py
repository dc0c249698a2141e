"""The package has no import circles, between modules or between its sub-packages, and keeps the README's
layout: the protocol imports neither side, nothing that judges speaks through the reference client, the genuine
host knows no fault (function-level imports count too: a lazy import is still a dependency)."""

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "conformance"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                out.append(sorted(scc))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def top(module: str) -> str:
    """conformance.harness.target -> conformance.harness; conformance.cli stays itself."""
    return ".".join(module.split(".")[:2])


def test_no_module_imports_itself_round_a_circle():
    assert cycles(imports()) == []


def test_no_two_subpackages_import_each_other():
    packages: dict[str, set[str]] = defaultdict(set)
    for source, targets in imports().items():
        for target in targets:
            if top(source) != top(target) and top(target) != "conformance":
                packages[top(source)].add(top(target))
    assert cycles(packages) == []


def test_the_graph_is_read_and_a_circle_is_seen():
    graph = imports()
    assert "conformance.net.runner" in graph["conformance.harness.target"]
    assert "conformance.harness.clauses" in graph["conformance.harness.allure_labels"]  # a relative import
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# The layout the README describes: the protocol both sides stand on, the code that is judged, the code that judges.
PROTOCOL = ("conformance.wire", "conformance.net", "conformance.dns", "conformance.catalog", "conformance.errors")
JUDGED = ("conformance.reference", "conformance.faults")
JUDGING = ("conformance.harness", "conformance.suite", "conformance.fuzz", "conformance.pcap", "conformance.report")
HOST, CLIENT = "conformance.reference.host", "conformance.reference.client"


def within(module: str, packages: tuple[str, ...] | str) -> bool:
    packages = (packages,) if isinstance(packages, str) else packages
    return any(module == p or module.startswith(p + ".") for p in packages)


def crossings(graph: dict[str, set[str]], sources, forbidden) -> list[str]:
    """Every import from a module of `sources` into a module of `forbidden`, as 'a -> b'."""
    return sorted(f"{s} -> {t}" for s, targets in graph.items() if within(s, sources)
                  for t in targets if within(t, forbidden))


def test_the_protocol_layer_imports_neither_side():
    graph = imports()
    outside = [f"{s} -> {t}" for s, targets in graph.items() if within(s, PROTOCOL) for t in targets
               if not within(t, PROTOCOL)]
    assert outside == []


def test_nothing_that_judges_speaks_through_the_reference_client():
    # a bug in the reference client's requests would otherwise be invisible to the suite that checks that client
    assert crossings(imports(), JUDGING + PROTOCOL, CLIENT) == []


def test_the_judged_import_nothing_that_judges_and_host_and_client_keep_apart():
    graph = imports()
    assert crossings(graph, JUDGED, JUDGING) == []
    assert crossings(graph, HOST, CLIENT) == [] and crossings(graph, CLIENT, HOST) == []


def test_the_genuine_host_knows_no_fault():
    graph = imports()
    assert crossings(graph, "conformance.reference", "conformance.faults") == []
    # a fault is a subclass in faults/, never a branch in the genuine path
    mentions = [f"{p.relative_to(PACKAGE)}:{n}" for p in (PACKAGE / "reference").rglob("*.py")
                for n, line in enumerate(p.read_text().splitlines(), 1) if "quirk" in line.lower()]
    assert mentions == []


def test_a_crossing_is_seen():
    graph = {"conformance.harness.target": {HOST, f"{CLIENT}.activation"}, "conformance.wire.rpc": {"conformance.fuzz"}}
    assert crossings(graph, JUDGING, CLIENT) == [f"conformance.harness.target -> {CLIENT}.activation"]
    assert crossings(graph, PROTOCOL, JUDGING) == ["conformance.wire.rpc -> conformance.fuzz"]
    assert not within("conformance.wirework", "conformance.wire")
