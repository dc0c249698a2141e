"""`kmsconf` subcommands that drive the conformance suite: clauses, check."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import socket
import sys
from pathlib import Path



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

    suite = Path(__file__).with_name("suite")
    # -q and -rfE: the verdicts by area and the failures, not a line per skipped check
    argv = [str(suite), "-p", "no:cacheprovider", "-q", "-rfE", "--profile", args.profile, "--protocol",
            args.protocol, "--summary", args.summary, "--rootdir", str(Path.cwd())]
    for option in ("target", "target_cmd", "expect", "control", "clause", "evidence_dir", "alluredir"):
        if getattr(args, option):
            argv += [f"--{option.replace('_', '-')}", getattr(args, option)]
    if args.intrusive:
        argv.append("--intrusive")
    return int(pytest.main(argv))


def cmd_replay(args: argparse.Namespace) -> int:
    from conformance.errors import Unreachable, UsageError
    from conformance.net.address import format_address, parse_address
    from conformance.pcap.reader import CaptureError
    from conformance.pcap.replay import differences, replay
    from conformance.wire.hresult import SL_E_VL_INVALID_TIMESTAMP

    host, port = parse_address(args.target)
    try:
        rows = replay(Path(args.file), host, port, refresh=args.refresh, port_filter=args.port, timeout=args.timeout)
    except CaptureError as exc:
        raise UsageError(str(exc)) from None
    except ConnectionError as exc:
        raise Unreachable(format_address(host, port), str(exc)) from None
    diffs = differences(rows)
    if args.json:
        json.dump({"rows": [r.__dict__ for r in rows], "differences": len(diffs)}, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        shown = rows if args.all else [r for r in rows if r.verdict != "same"]
        print(f"{'#':>3} {'field':<22} {'recorded':<36} {'replayed':<36} verdict")
        for r in shown:
            print(f"{r.exchange:>3} {r.field:<22} {str(r.recorded)[:36]:<36} {str(r.replayed)[:36]:<36} {r.verdict}")
        print(f"{len(rows)} fields compared, {len(diffs)} differences that matter"
              + ("" if args.all else " (--all shows identical fields too)"))
        stale = [r for r in diffs if r.replayed == f"0x{SL_E_VL_INVALID_TIMESTAMP:08X}"]
        if stale and not args.refresh:
            print(f"{len(stale)} request(s) refused with 0x{SL_E_VL_INVALID_TIMESTAMP:08X} (request time more than 4 h "
                  f"from the host's clock): the capture is old; --refresh re-seals its requests with the time now")
    return 1 if diffs else 0


def cmd_fuzz(args: argparse.Namespace) -> int:
    import shlex

    from conformance.errors import Unreachable, UsageError
    from conformance.net.address import format_address
    from conformance.fuzz.campaign import Progress, campaign, finding_counts, findings_json
    from conformance.process.monitor import TargetCommand, TargetStartError
    from conformance.fuzz.mutators import Seed
    from conformance.net.address import parse_address
    from conformance.net.runner import Runner
    from conformance.wire.messages import filetime_now

    if args.target and args.target_cmd:
        raise UsageError("--target and --target-cmd name two targets: give one")
    if not (args.target or args.target_cmd):
        raise UsageError("give the target: --target HOST:PORT (a host already running) or --target-cmd \"CMD {port}\" "
                         "(a command the campaign starts, watches and restarts)")
    command = TargetCommand.parse(args.target_cmd) if args.target_cmd else None
    address = parse_address(args.target) if args.target else None
    if args.timeout <= 0:
        raise UsageError(f"--timeout {args.timeout}: give the seconds an answer may take, above 0")
    if args.replay:
        return _fuzz_replay(args, command, address)
    if args.runs is None and args.budget is None:
        args.runs = 500
    if (args.runs is not None and args.runs < 1) or (args.budget is not None and args.budget <= 0):
        raise UsageError("--runs must be at least 1 and --budget more than 0 seconds")
    if args.connections < 1:
        raise UsageError(f"--connections {args.connections}: at least 1 exchange in flight")
    if not 0 <= args.sequences < 1:
        raise UsageError(f"--sequences {args.sequences}: a share of the inputs, from 0 (none) to below 1, e.g. 0.2")
    seed = Seed.default(args.protocol)
    if args.seed_pcap:
        from conformance.pcap.decode import decode_capture
        from conformance.pcap.reader import CaptureError

        try:
            requests = [e.request for c in decode_capture(Path(args.seed_pcap)) for e in c.kms if e.request]
        except CaptureError as exc:
            raise UsageError(str(exc)) from None
        if not requests:
            raise UsageError(f"{args.seed_pcap}: no decodable KMS request to use as the seed")
        seed = Seed(requests[0].request)
    if command is None:
        try:
            socket.create_connection(address, timeout=args.timeout).close()
        except OSError as exc:
            raise Unreachable(format_address(*address), exc) from None
    replay_target = f"--target-cmd {shlex.quote(args.target_cmd)}" if command else f"--target {args.target}"
    show = Progress(sys.stderr) if not args.json else None

    def probe():
        return dataclasses.replace(seed.request, request_time=filetime_now())

    try:
        with _fuzz_target(command, address) as (address, monitor):
            _speaks_rpc(address, args.timeout, f"--target-cmd's target on {format_address(*address)}"
                        if command else f"--target {args.target}")
            result = campaign(Runner(*address, args.timeout), probe, runs=args.runs, budget=args.budget,
                              findings_dir=Path(args.findings), seed=seed, progress=show, stream=args.random_seed,
                              monitor=monitor, connections=args.connections, sequences=args.sequences,
                              shrink=not args.no_shrink, replay_target=replay_target)
    except TargetStartError as exc:
        print(f"kmsconf fuzz: --target-cmd: {exc}", file=sys.stderr)
        return 1
    if show:
        show.end()
    summary = {"runs": result.runs, "seconds": round(result.seconds, 2), "rate": round(result.rate, 1),
               "connections": args.connections, "connections_opened": result.connections,
               "outcomes": dict(result.outcomes), "restarts": result.restarts,
               "serial_executions": result.serial_executions,
               "findings": findings_json(result), "finding_counts": finding_counts(result)}
    if args.json:
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"{result.runs} runs in {result.seconds:.1f} s ({result.rate:.0f}/s, {args.connections} in flight)"
              + (f"; target restarted {result.restarts} time(s)" if monitor is not None else ""))
        for outcome, count in sorted(result.outcomes.items()):
            print(f"  {outcome:<10} {count}")
        for f in result.findings:
            print(f"FINDING x{f.count}: {f.outcome}: {f.detail}")
            print(f"  input: {f.input.describe()}" + ("" if f.reproduced else " (not reproduced alone)"))
            print(f"  reproducer: {f.pcap}\n  replay: {f.replay}")
    return 1 if result.findings else 0


def _speaks_rpc(address: tuple[str, int], timeout: float, what: str) -> None:
    """Before the budget starts: a DCE/RPC bind must get a bind_ack or bind_nak there (the suite's probe), or the
    whole campaign would be findings about another service."""
    from conformance.errors import Unreachable
    from conformance.harness.probes import speaks_rpc

    why = speaks_rpc(address, timeout)
    if why is not None:
        raise Unreachable(what, f"something listens there, but a DCE/RPC bind got {why}; is it a KMS host (the port)?",
                          plain=True)


@contextlib.contextmanager
def _fuzz_target(command, address: tuple[str, int] | None):
    """(address, monitor): --target's address, or the command's, started now and stopped after (--target-cmd)."""
    from conformance.process.monitor import TargetProcess

    if command is None:
        yield address, None
        return
    with TargetProcess(command) as monitor:
        yield monitor.address, monitor


def _fuzz_replay(args: argparse.Namespace, command, address) -> int:
    """Send a finding's input again (under the monitor with --target-cmd) and say what it does."""
    from conformance.errors import UsageError
    from conformance.fuzz.campaign import replay_finding
    from conformance.process.monitor import TargetStartError
    from conformance.fuzz.program import load
    from conformance.net.runner import Runner
    from conformance.pcap.reader import CaptureError

    try:
        program = load(Path(args.replay))
    except (CaptureError, ValueError, KeyError, OSError) as exc:
        raise UsageError(f"--replay {args.replay}: {exc}") from None
    try:
        with _fuzz_target(command, address) as (address, monitor):
            seen = replay_finding(program, Runner(*address, args.timeout), monitor)
    except TargetStartError as exc:
        print(f"kmsconf fuzz: --target-cmd: {exc}", file=sys.stderr)
        return 1
    print(f"replayed {args.replay}: {program.describe()}")
    for line in seen:
        print(line)
    return 1 if seen else 0


def cmd_fuzz_merge(args: argparse.Namespace) -> int:
    from conformance.fuzz.shards import merge_files

    return merge_files(Path(args.out), [Path(p) for p in args.inputs], "kmsconf fuzz-merge")


def cmd_dns_lab(args: argparse.Namespace) -> int:
    import signal
    import threading

    from conformance.errors import UsageError
    from conformance.net.address import parse_address
    from conformance.dns.lab import DnsLab

    host, port = parse_address(args.listen, 0)
    if not (host.startswith("127.") or host == "::1"):
        raise UsageError(f"the DNS lab listens on loopback only, not {host}")
    lab = DnsLab(zones=tuple(args.zone or ["kms.test"]), host=host, port=port)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before named starts: a Ctrl-C at any time stops it
        signal.signal(sig, lambda *_: stop.set())
    try:
        try:
            lab.start()
        except (FileNotFoundError, RuntimeError, TimeoutError) as exc:
            raise UsageError(str(exc)) from None
        print(f"named (BIND) on {lab.host}:{lab.port}, zones {', '.join(lab.zones)} take dynamic updates from "
              f"127.0.0.0/8", flush=True)
        print(f"  publish: kmsconf host --dns-publish --dns-server {lab.host}:{lab.port} --dns-domain {lab.zones[0]}")
        print(f"  find:    kmsconf activate --discover {lab.zones[0]} --dns-server {lab.host}:{lab.port} --product ...")
        print("running until Ctrl-C (or SIGTERM), then named stops and its zones are removed", flush=True)
        stop.wait()
    finally:
        lab.stop()
    return 0


def cmd_matrix(args: argparse.Namespace) -> int:
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from conformance.errors import EXIT_UNREACHABLE, UsageError
    from conformance.net.address import parse_address
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


def cmd_simulate(args: argparse.Namespace) -> int:
    from conformance.errors import UsageError
    from conformance.reference.simulate import simulate

    if args.clients < 0 or args.servers < 0 or args.days <= 0:
        raise UsageError("--clients and --servers must be >= 0 and --days > 0")
    down = None
    if args.host_down:
        try:
            start, end = (float(x) for x in args.host_down.split(":"))
        except ValueError:
            raise UsageError(f"--host-down {args.host_down!r}: write FROM:TO in days, e.g. 20:40") from None
        down = (start, end)
    result = simulate(args.clients, args.servers, args.days, seed=args.seed, host_down=down)
    if args.json:
        json.dump({"attempts": result.attempts, "final_count": result.final_count,
                   "events": [e.__dict__ for e in result.events],
                   "machines": {m.name: m.life.licence.value for m in result.machines}}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(f"{args.clients} clients (N=25) and {args.servers} servers (N=5) over {args.days:g} days"
          + (f", host down from day {down[0]:g} to {down[1]:g}" if down else ""))
    print("each machine's changes of state (activated, expired, failed renewals), with the count the host "
          "answered; the renewals that succeeded are summed up at the end")
    for event in result.events:
        print(f"day {event.day:8.3f}  {event.machine:<10} {event.what}")
    print(renewal_summary(result.renewals, len(result.machines)))
    states = {}
    for m in result.machines:
        states[m.life.licence.value] = states.get(m.life.licence.value, 0) + 1
    licences = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "no machines"
    print(f"after {args.days:g} days: {licences}; host count {result.final_count}; {result.attempts} requests")
    return 0


def renewal_summary(renewals: list[tuple[float, str]], machines: int) -> str:
    """How many renewals succeeded, when, and how often each machine renewed."""
    if not renewals:
        return "renewals: none succeeded"
    days = [d for d, _ in renewals]
    by_machine: dict[str, list[float]] = {}
    for day, name in renewals:
        by_machine.setdefault(name, []).append(day)
    gaps = [b - a for times in by_machine.values() for a, b in zip(times, times[1:])]
    every = f", each about every {sum(gaps) / len(gaps):.1f} days" if gaps else ""
    return (f"renewals: {len(renewals)} succeeded, by {len(by_machine)} of {machines} machines{every} "
            f"(from day {min(days):.1f} to day {max(days):.1f})")


def cmd_report(args: argparse.Namespace) -> int:
    """The suite with the user's options, then the Allure report as one HTML file."""
    import pytest

    from conformance.errors import EXIT_MISSING_TOOL
    from conformance.report import allure_cli, single_file

    try:  # before the suite runs: its verdicts would have nowhere to go
        allure = allure_cli.find(Path(__file__).resolve().parents[1], Path.cwd())
    except allure_cli.AllureMissing as exc:
        print(f"kmsconf report: {exc}", file=sys.stderr)
        return EXIT_MISSING_TOOL
    argv = [str(Path(__file__).with_name("suite")), "-q", "-p", "no:cacheprovider", "--alluredir", args.results,
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


def register(add) -> None:
    from conformance.report.allure_cli import INSTALL as INSTALL_ALLURE


    p = add("simulate", "run many KMS clients against the reference host on a virtual clock and print the timeline",
            "  kmsconf simulate --clients 30 --servers 6 --days 200\n"
            "  kmsconf simulate --clients 20 --servers 2 --days 400 --host-down 30:250")
    p.add_argument("--clients", type=int, default=30, help="client OS machines (N = 25)")
    p.add_argument("--servers", type=int, default=6, help="server OS machines (N = 5)")
    p.add_argument("--days", type=float, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--host-down", metavar="FROM:TO", help="days during which the host does not answer")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_simulate)

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

    p = add("dns-lab", "run a real BIND named on loopback with zones that accept dynamic updates",
            "  kmsconf dns-lab --listen 127.0.0.1:5353 --zone kms.test")
    p.add_argument("--listen", default="127.0.0.1:0", metavar="ADDR:PORT")
    p.add_argument("--zone", action="append", metavar="DOMAIN", help="zone to serve (repeatable; default kms.test)")
    p.set_defaults(func=cmd_dns_lab)

    p = add("fuzz", "fuzz a KMS host: mutated exchanges and PDU sequences; crashes, sanitizer reports, hangs and "
            "broken rules become minimised reproducers",
            "  kmsconf fuzz --target 127.0.0.1:1688 --runs 2000\n"
            "  kmsconf fuzz --target 127.0.0.1:1688 --budget 60 --seed-pcap capture.pcap\n"
            "  kmsconf fuzz --target-cmd \"/opt/vlmcsd/bin/vlmcsd -D -e -L 127.0.0.1:{port}\" --budget 600 \\\n"
            "               --connections 4\n"
            "  kmsconf fuzz --replay reports/findings/finding-001-crash.pcap \\\n"
            "               --target-cmd \"/opt/vlmcsd/bin/vlmcsd -D -e -L 127.0.0.1:{port}\"\n\n"
            "--target-cmd starts the command on a free loopback port ({port}; {host} is 127.0.0.1) and watches\n"
            "it: exit status and signal, AddressSanitizer, UBSan and LeakSanitizer reports (written to files of\n"
            "the monitor's), glibc aborts and Python's fatal errors and tracebacks in its output, a forked\n"
            "child's too; it restarts the target after a crash or a hang. Each finding is pinned on the input\n"
            "that does it alone, minimised (fewest PDUs, fewest changed bytes, KMS fields through the\n"
            "encryption) and counted once per (outcome, kind, top frames).\n"
            "exit status: 0 no finding, 1 a finding (or --target-cmd's target did not start), 2 a wrong option,\n"
            "3 --target could not be reached")
    p.add_argument("--target", metavar="HOST:PORT", help="a host already running")
    p.add_argument("--target-cmd", metavar="CMD", help="start this command as the target, with {port} where it "
                   "takes its port, and watch it (a process monitor)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--runs", type=int, help="number of inputs (default 500)")
    g.add_argument("--budget", type=float, metavar="SECONDS", help="run for this long")
    g.add_argument("--replay", metavar="FINDING.pcap", help="send a finding's input again and say what it does")
    p.add_argument("--connections", type=int, default=1, metavar="K", help="exchanges kept in flight (default 1)")
    p.add_argument("--sequences", type=float, default=0.2, metavar="SHARE",
                   help="share of stateful PDU sequences among the inputs (default 0.2; 0: single exchanges only)")
    p.add_argument("--seed-pcap", metavar="FILE", help="mutate the first KMS request of this capture")
    p.add_argument("--protocol", type=int, choices=(4, 5, 6), default=6, help="seed request version")
    p.add_argument("--random-seed", type=int, metavar="N", help="draw the same inputs as another run with this N")
    p.add_argument("--findings", default="reports/findings", metavar="DIR",
                   help="where findings go: pcap, input (JSON) and what happened (text)")
    p.add_argument("--timeout", type=float, default=3.0, metavar="SECONDS",
                   help="an answer later than this is a hang (default 3)")
    p.add_argument("--no-shrink", action="store_true", help="keep each finding's input as found")
    p.add_argument("--json", action="store_true", help="the summary and findings as JSON on stdout")
    p.set_defaults(func=cmd_fuzz)

    p = add("fuzz-merge", "merge the fuzz-campaign.json (or shard.json) files of several machines or jobs into one",
            "  kmsconf fuzz-merge reports/fuzz-campaign.json machine-*/fuzz-campaign.json\n"
            "exit status: 0 complete and no finding, 1 a finding or a missing shard, 2 an unreadable input")
    p.add_argument("out", help="the merged report to write")
    p.add_argument("inputs", nargs="+", help="campaign reports or shard records")
    p.set_defaults(func=cmd_fuzz_merge)

    p = add("replay", "re-send a capture's client PDUs to a target and compare its answers field by field",
            "  kmsconf replay captures/reference/v6_multi3_sameconn.pcap --target 127.0.0.1:1688 --refresh\n"
            "  kmsconf replay old.pcapng --target 127.0.0.1:1688 --port 1688 --json")
    p.add_argument("file")
    p.add_argument("--target", required=True, metavar="HOST:PORT")
    p.add_argument("--refresh", action="store_true", help="re-stamp each request with the current time and a new IV")
    p.add_argument("--port", type=int, help="only connections on this port of the capture")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--all", action="store_true", help="show identical fields too")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_replay)

    p = add("clauses", "list the conformance clauses (id, level, source, title)",
            "  kmsconf clauses\n  kmsconf clauses --area CACHE --json")
    p.add_argument("--area", help="only this area (RPC, MSG, THR, CACHE, GRP, TIME, ROB, CLI, DNS)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--markdown", action="store_true", help="the catalogue as a Markdown table (as in the README)")
    p.set_defaults(func=cmd_clauses)

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
