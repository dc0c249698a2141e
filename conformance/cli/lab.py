"""`kmsconf dns-lab` and `kmsconf simulate`: a DNS server to publish and discover in, and a fleet on a virtual clock."""

from __future__ import annotations

import argparse
import json
import sys

from conformance.errors import UsageError
from conformance.net.address import parse_address


def cmd_dns_lab(args: argparse.Namespace) -> int:
    import signal
    import threading

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


def cmd_simulate(args: argparse.Namespace) -> int:
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


def add_dns_lab(add) -> None:
    p = add("dns-lab", "run a real BIND named on loopback with zones that accept dynamic updates",
            "  kmsconf dns-lab --listen 127.0.0.1:5353 --zone kms.test")
    p.add_argument("--listen", default="127.0.0.1:0", metavar="ADDR:PORT")
    p.add_argument("--zone", action="append", metavar="DOMAIN", help="zone to serve (repeatable; default kms.test)")
    p.set_defaults(func=cmd_dns_lab)


def add_simulate(add) -> None:
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
