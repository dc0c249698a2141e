"""`kmsconf fuzz` and `kmsconf fuzz-merge`: a fuzz campaign against a host, and the merge of campaigns' shards."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import socket
import sys
from pathlib import Path

from conformance.errors import HostUnreachable, UsageError
from conformance.net.address import format_address, parse_address


def cmd_fuzz(args: argparse.Namespace) -> int:
    import shlex

    from conformance.fuzz.campaign import Progress, campaign, finding_counts, findings_json
    from conformance.process.monitor import TargetCommand, TargetStartError
    from conformance.fuzz.mutators import Seed
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
            raise HostUnreachable(format_address(*address), exc) from None
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
    from conformance.harness.probes import speaks_rpc

    why = speaks_rpc(address, timeout)
    if why is not None:
        raise HostUnreachable(what, f"something listens there, but a DCE/RPC bind got {why}; is it a KMS host "
                              f"(the port)?", plain=True)


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


def add_fuzz(add) -> None:
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


def add_fuzz_merge(add) -> None:
    p = add("fuzz-merge", "merge the fuzz-campaign.json (or shard.json) files of several machines or jobs into one",
            "  kmsconf fuzz-merge reports/fuzz-campaign.json machine-*/fuzz-campaign.json\n"
            "exit status: 0 complete and no finding, 1 a finding or a missing shard, 2 an unreadable input")
    p.add_argument("out", help="the merged report to write")
    p.add_argument("inputs", nargs="+", help="campaign reports or shard records")
    p.set_defaults(func=cmd_fuzz_merge)
