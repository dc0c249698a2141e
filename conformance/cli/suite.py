"""`kmsconf` commands that drive the conformance suite: clauses, check, report, matrix."""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path

from conformance.errors import EXIT_MISSING_TOOL, EXIT_UNREACHABLE, UsageError
from conformance.net.address import parse_address

PACKAGE = Path(__file__).parents[1]  # conformance/: the suite is its suite/


def clauses_markdown() -> str:
    """The clause catalogue as Markdown (the README's copy is checked against this)."""
    from conformance.harness import clauses

    lines = ["| clause | level | source | rule | profiles |", "|---|---|---|---|---|"]
    for c in clauses.load().values():
        title = c.title.replace("|", "\\|")
        lines.append(f"| `{c.id}` | {c.level} | {c.ref} | {title} | {', '.join(c.profiles)} |")
    return "\n".join(lines) + "\n"


def cmd_clauses(args: argparse.Namespace) -> int:
    from conformance.harness import clauses

    if args.markdown:
        sys.stdout.write(clauses_markdown())
        return 0
    rows = list(clauses.load().values())
    if args.area:
        from conformance.errors import UsageError

        if args.area.upper().removeprefix("KMS-") not in clauses.AREAS:
            raise UsageError(f"--area {args.area}: no such area (areas: {', '.join(clauses.AREAS)})")
        rows = [c for c in rows if c.area == args.area.upper().removeprefix("KMS-")]
    if args.json:
        json.dump([{"id": c.id, "title": c.title, "area": c.area, "ref": c.ref, "level": c.level,
                    "profiles": list(c.profiles)} for c in rows], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    for c in rows:
        print(f"{c.id:<14} {c.level:<6} {c.ref:<28} {c.title}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Run the suite against a target without the user knowing pytest."""
    import pytest

    suite = PACKAGE / "suite"
    # -q and -rfE: the verdicts by area and the failures, not a line per skipped check
    argv = [str(suite), "-p", "no:cacheprovider", "-q", "-rfE", "--profile", args.profile, "--protocol",
            args.protocol, "--summary", args.summary, "--rootdir", str(Path.cwd())]
    for option in ("target", "target_cmd", "expect", "control", "clause", "evidence_dir", "alluredir"):
        if getattr(args, option):
            argv += [f"--{option.replace('_', '-')}", getattr(args, option)]
    if args.intrusive:
        argv.append("--intrusive")
    return int(pytest.main(argv))


def cmd_report(args: argparse.Namespace) -> int:
    """The suite with the user's options, then the Allure report as one HTML file."""
    import pytest

    from conformance.report import allure_cli, single_file

    try:  # before the suite runs: its verdicts would have nowhere to go
        allure = allure_cli.find(PACKAGE.resolve().parent, Path.cwd())
    except allure_cli.AllureMissing as exc:
        print(f"kmsconf report: {exc}", file=sys.stderr)
        return EXIT_MISSING_TOOL
    argv = [str(PACKAGE / "suite"), "-q", "-p", "no:cacheprovider", "--alluredir", args.results,
            "--clean-alluredir", "--profile", args.profile, "--summary", str(Path(args.results).parent / "summary.json")]
    for option in ("target", "target_cmd", "expect", "control", "clause"):
        if getattr(args, option):
            argv += [f"--{option.replace('_', '-')}", getattr(args, option)]
    verdict = int(pytest.main(argv))
    if verdict in (2, 3, 4):
        return verdict  # a mistake or an unreachable target: pytest has said so in one line
    allure_cli.generate(allure, args.results, args.out)
    page = Path(args.out) / "index.html"
    for fault in single_file.harden(page) if page.is_file() else []:
        print(f"note: {allure[-1]} laid the page out otherwise than Allure {allure_cli.ALLURE_VERSION}; {fault} left "
              f"as it wrote them", file=sys.stderr)
    print(f"report: {args.out}/index.html, one file: open it in a browser (suite exit status {verdict})")
    return verdict


def cmd_matrix(args: argparse.Namespace) -> int:
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from conformance.process.monitor import TargetCommand
    from conformance.report.matrix import MatrixTarget, build, run_target

    from conformance.harness.expectations import resolve

    expects = {}
    for item in args.expect:
        name, sep, path = item.partition("=")
        if not sep:
            raise UsageError(f"--expect {item!r}: write NAME=PROFILE (vlmcsd, pykms) or NAME=FILE.toml")
        expects[name] = str(resolve(path))
    targets = []
    for item in args.target:
        name, sep, address = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--target {item!r}: write NAME=HOST:PORT")
        if any(t.name == name for t in targets):
            raise UsageError(f"--target {item!r}: the name {name!r} is taken by another --target (one name each)")
        parse_address(address)
        targets.append(MatrixTarget(name, address, expects.get(name)))
    for item in args.target_cmd:
        name, sep, command = item.partition("=")
        if not sep or not name or not command:
            raise UsageError(f"--target-cmd {item!r}: write NAME=COMMAND, with {{port}} in the command")
        if any(t.name == name for t in targets):
            raise UsageError(f"--target-cmd {item!r}: the name {name!r} is taken by another target (one name each)")
        TargetCommand.parse(command, f"--target-cmd {name}=")
        targets.append(MatrixTarget(name, "", expects.get(name), command))
    if not targets:
        raise UsageError("give the targets: --target NAME=HOST:PORT or --target-cmd NAME=COMMAND (repeatable)")
    unknown = set(expects) - {t.name for t in targets}
    if unknown:
        raise UsageError(f"--expect names no --target: {', '.join(sorted(unknown))}")
    for target in (t for t in targets if t.address):
        try:
            socket.create_connection(parse_address(target.address), timeout=args.timeout).close()
        except OSError as exc:
            print(f"kmsconf matrix: --target {target.name}={target.address}: cannot connect "
                  f"({exc.strerror or exc}); is the KMS host running there?", file=sys.stderr)
            return EXIT_UNREACHABLE
    out = Path(args.out)
    results = {}
    print(f"running the suite against {len(targets)} targets at once: "
          + ", ".join(f"{t.name} ({t.address or t.command})" for t in targets), flush=True)
    with ThreadPoolExecutor(len(targets)) as pool:  # each run is a pytest process of its own, against its own host
        runs = {pool.submit(run_target, target, out, args.profile): target for target in targets}
        for n, done in enumerate(as_completed(runs), 1):
            target = runs[done]
            try:
                results[target.name] = done.result()
            except RuntimeError as exc:
                print(f"kmsconf matrix: {exc}", file=sys.stderr)
                return 1
            verdicts = [r["verdict"] for r in results[target.name]]
            print(f"[{n}/{len(targets)}] {target.name}: "
                  + ", ".join(f"{verdicts.count(v)} {v}" for v in dict.fromkeys(verdicts)), flush=True)
    results = {t.name: results[t.name] for t in targets}
    build(results, targets, out)
    print(f"matrix: {out / 'index.html'} and {out / 'index.json'}")
    failed = [name for name, records in results.items() if any(r["verdict"] in ("fail", "xpass") for r in records)]
    if failed:
        print(f"a clause failed (or a declared deviation is stale) for: {', '.join(failed)}")
    return 1 if failed else 0


def add_clauses(add) -> None:
    p = add("clauses", "list the conformance clauses (id, level, source, title)",
            "  kmsconf clauses\n  kmsconf clauses --area CACHE --json")
    p.add_argument("--area", help="only this area (RPC, MSG, THR, CACHE, GRP, TIME, ROB, CLI, DNS)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--markdown", action="store_true", help="the catalogue as a Markdown table (as in the README)")
    p.set_defaults(func=cmd_clauses)


def add_check(add) -> None:
    p = add("check", "run the conformance suite against a KMS host (default: the embedded reference host)",
            "  kmsconf check\n  kmsconf check --target 127.0.0.1:1688 --profile emulator --expect vlmcsd")
    p.add_argument("--target", metavar="HOST:PORT")
    p.add_argument("--profile", default="microsoft", choices=("microsoft", "emulator"))
    p.add_argument("--protocol", default="all", choices=("4", "5", "6", "all"))
    p.add_argument("--expect", metavar="NAME|FILE.toml", help="declared deviations: vlmcsd, pykms or a file")
    p.add_argument("--control", metavar="HOST:PORT", help="control channel of a `kmsconf host --control`")
    p.add_argument("--target-cmd", metavar="COMMAND", help="start the host itself and be in charge of its life: "
                   "{port} where it takes its port, {dir} an empty state directory per fresh start")
    p.add_argument("--clause", metavar="ID|AREA|PATTERN", help="only these clauses, e.g. KMS-RPC or 'KMS-MSG-00*'")
    p.add_argument("--intrusive", action="store_true",
                   help="on a host outside loopback, also the clauses that add clients or send bad input")
    p.add_argument("--evidence-dir", metavar="DIR", help="each check's exchanges as pcap and decoded JSON")
    p.add_argument("--summary", default="reports/summary.json")
    p.add_argument("--alluredir", help="also write Allure results here")
    p.set_defaults(func=cmd_check)


def add_report(add) -> None:
    from conformance.report.allure_cli import INSTALL as INSTALL_ALLURE

    p = add("report", "run the suite and build the Allure HTML report (needs the Allure 3 command line)",
            "  kmsconf report\n  kmsconf report --target 127.0.0.1:1688 --expect vlmcsd --profile emulator\n\n"
            "Allure 3 is looked for in this checkout's node_modules (make setup), ./node_modules, on PATH and\n"
            f"in what npx already has; without it: {INSTALL_ALLURE}.\n"
            "exit status: the suite's (0, 1, 2, 3), or 6 when Allure is not installed")
    p.add_argument("--target", metavar="HOST:PORT", help="the host under test (default: the embedded reference host)")
    p.add_argument("--expect", metavar="NAME|FILE.toml", help="declared deviations (vlmcsd, pykms or a file)")
    p.add_argument("--profile", default="microsoft", choices=("microsoft", "emulator"))
    p.add_argument("--control", metavar="HOST:PORT", help="test-control channel of a reference host")
    p.add_argument("--target-cmd", metavar="COMMAND", help="start the host itself: {port} where it takes its port, "
                   "{dir} an empty state directory")
    p.add_argument("--clause", metavar="ID|AREA|PATTERN", help="only these clauses")
    p.add_argument("--results", default="reports/allure-results")
    p.add_argument("--out", default="reports/allure-report")
    p.set_defaults(func=cmd_report)


def add_matrix(add) -> None:
    p = add("matrix", "run the suite against several implementations and write a side-by-side report",
            "  kmsconf matrix --target reference=127.0.0.1:1688 --target vlmcsd=127.0.0.1:1689 \\\n"
            "                 --expect vlmcsd=vlmcsd")
    p.add_argument("--target", action="append", default=[], metavar="NAME=HOST:PORT")
    p.add_argument("--target-cmd", action="append", default=[], metavar="NAME=COMMAND",
                   help="a host the suite starts itself ({port}, {dir}), e.g. 'vlmcsd=vlmcsd -D -M1 -E1 -L 127.0.0.1:{port}'")
    p.add_argument("--expect", action="append", default=[], metavar="NAME=PROFILE|FILE.toml")
    p.add_argument("--profile", default="microsoft", choices=("microsoft", "emulator"))
    p.add_argument("--out", default="reports/matrix")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS")
    p.set_defaults(func=cmd_matrix)
