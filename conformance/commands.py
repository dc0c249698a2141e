"""`kmsconf` subcommands that drive the conformance suite: clauses, check."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def cmd_clauses(args: argparse.Namespace) -> int:
    from conformance.harness import clauses

    rows = list(clauses.load().values())
    if args.area:
        rows = [c for c in rows if c.area == args.area.upper()]
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
    argv = [str(suite), "-p", "no:cacheprovider", "-q", "--profile", args.profile, "--protocol", args.protocol,
            "--summary", args.summary, "--rootdir", str(Path.cwd())]
    if args.target:
        argv += ["--target", args.target]
    if args.expect:
        argv += ["--expect", args.expect]
    if args.control:
        argv += ["--control", args.control]
    if args.alluredir:
        argv += ["--alluredir", args.alluredir]
    return int(pytest.main(argv))


def cmd_replay(args: argparse.Namespace) -> int:
    from conformance.cli import UsageError, parse_address
    from conformance.pcap.reader import CaptureError
    from conformance.pcap.replay import differences, replay

    host, port = parse_address(args.target)
    try:
        rows = replay(Path(args.file), host, port, refresh=args.refresh, port_filter=args.port, timeout=args.timeout)
    except CaptureError as exc:
        raise UsageError(str(exc)) from None
    except ConnectionError as exc:
        print(f"kmsconf replay: {exc}", file=sys.stderr)
        return 1
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
    return 1 if diffs else 0


def register(add) -> None:
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
    p.set_defaults(func=cmd_clauses)

    p = add("check", "run the conformance suite against a KMS host (default: the embedded reference host)",
            "  kmsconf check\n  kmsconf check --target 127.0.0.1:1688 --profile emulator --expect targets/vlmcsd.toml")
    p.add_argument("--target", metavar="HOST:PORT")
    p.add_argument("--profile", default="microsoft", choices=("microsoft", "emulator"))
    p.add_argument("--protocol", default="all", choices=("4", "5", "6", "all"))
    p.add_argument("--expect", metavar="FILE.toml", help="declared deviations of this target")
    p.add_argument("--control", metavar="HOST:PORT", help="control channel of a `kmsconf host --control`")
    p.add_argument("--summary", default="reports/summary.json")
    p.add_argument("--alluredir", help="also write Allure results here")
    p.set_defaults(func=cmd_check)
