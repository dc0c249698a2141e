"""`kmsconf host` and `kmsconf host-status`: the reference host in the foreground, and what its database holds."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import signal
import sys
from pathlib import Path

from conformance.errors import UsageError
from conformance.net.address import format_address, parse_address

from .output import print_json


def cmd_host(args: argparse.Namespace) -> int:
    from conformance.reference.host.config import HostConfig
    from conformance.net.loop import new_event_loop, raise_fd_limit

    host, port = parse_address(args.listen)
    workers = args.workers if args.workers is not None else (1 if args.control else len(os.sched_getaffinity(0)))
    if workers < 1:
        raise UsageError(f"--workers {workers}: give 1 or more")
    if workers > 1 and args.control:
        raise UsageError("--control needs --workers 1 (the clock and reset act on one process's client table)")
    try:
        config = HostConfig(
            host=host, port=port, activation_interval=args.activation_interval,
            renewal_interval=args.renewal_interval, key_group=args.key_group, host_build=args.host_build,
            protocols=_protocols(args.protocols), max_cache=args.max_cache,
            host_os=args.host_os,
            db=args.db, event_log=args.event_log, low_priority=args.low_priority,
            dns_publish=args.dns_publish, control=args.control,
            dns_server=parse_address(args.dns_server, 53) if args.dns_server else None,
            dns_publish_list=tuple(args.dns_domain), dns_hostname=args.dns_hostname,
            dns_unpublish_on_exit=args.dns_unpublish_on_exit,
            max_connections=args.max_connections, idle_timeout=args.idle_timeout, bind_timeout=args.bind_timeout,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    raise_fd_limit(config.max_connections + 256)  # every held connection is a file descriptor
    try:
        loop_factory = functools.partial(new_event_loop, args.loop)
        loop_factory().close()  # an unknown or missing loop is a usage error before anything starts
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    from conformance.reference.host.store import StoreUnusable

    created = config.db != ":memory:" and not Path(config.db).exists()
    try:
        return _host_workers(config, workers, args.loop) if workers > 1 else _host(config, loop_factory)
    except StoreUnusable as exc:
        if created:  # a file the host made and could not write: not left behind
            for path in (config.db, f"{config.db}-wal", f"{config.db}-shm"):
                with contextlib.suppress(OSError):
                    os.unlink(path)
        print(f"kmsconf host: {exc}", file=sys.stderr)
        return exc.status


def _host(config, loop_factory) -> int:
    """The host as one process."""
    import sqlite3

    from conformance.reference.host.server import ReferenceHost
    from conformance.reference.host.store import StoreUnusable

    async def serve() -> None:
        try:
            reference = ReferenceHost(config)
        except (LookupError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        except sqlite3.Error as exc:
            raise StoreUnusable(config.db, exc) from None
        address = await reference.start()
        print(f"kmsconf host listening on {format_address(*address[:2])}", flush=True)
        for domain, ok, detail in reference.publish_results:
            print(f"DNS: {'published in' if ok else 'FAILED to publish in'} {domain} ({detail})", flush=True)
        if reference.control_address:
            print(f"test control on {format_address(*reference.control_address[:2])}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await reference.stop()
        reference.service.store.close()
        print("kmsconf host stopped", flush=True)

    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(serve())
    except OSError as exc:
        raise UsageError(f"cannot listen on {format_address(config.host, config.port)}: {exc.strerror or exc}") from None
    return 0


def _host_workers(config, workers: int, loop: str) -> int:
    """The host as `workers` processes on one port (reference/host/workers.py)."""
    import sqlite3

    from conformance.reference.host.store import StoreUnusable
    from conformance.reference.host.workers import Supervisor

    stop = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.append(True))
    try:
        supervisor = Supervisor(config, workers, loop)
        address = supervisor.start()
    except (LookupError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    except sqlite3.Error as exc:
        raise StoreUnusable(config.db, exc) from None
    except OSError as exc:
        raise UsageError(f"cannot listen on {format_address(config.host, config.port)}: {exc.strerror or exc}") from None
    except RuntimeError as exc:
        print(f"kmsconf host: {exc}", file=sys.stderr)
        return 1
    print(f"kmsconf host listening on {format_address(*address[:2])}", flush=True)
    where = "shared memory" if config.db == ":memory:" else config.db
    print(f"{workers} workers, one client table in {where}", flush=True)
    for domain, ok, detail in supervisor.publish_results:
        print(f"DNS: {'published in' if ok else 'FAILED to publish in'} {domain} ({detail})", flush=True)
    status = supervisor.wait(lambda: bool(stop))
    if status == 0:
        supervisor.stop()
        print("kmsconf host stopped", flush=True)
    return status


def cmd_host_status(args: argparse.Namespace) -> int:
    from conformance.reference.host.status import NotAHostDatabase, read_status

    try:
        status = read_status(args.db)
    except NotAHostDatabase as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print_json(status)
        return 0
    for key in ("count", "cache_size", "epid", "hwid", "activation_interval", "renewal_interval"):
        print(f"{key.replace('_', ' '):<20}: {status[key]}")
    print(f"{'host keys':<20}: {', '.join(status['host_keys']) or 'none'}"
          + ("" if status["key_group"] == "default" else f" (--key-group {status['key_group']})"))
    for episode in status["recording_failures"]:
        print(f"{'recording failed':<20}: {_stamp(episode['since'])} to {_stamp(episode['until'])}, "
              f"{episode['requests']} request(s) closed unanswered ({episode['error']})")
    if status["last_requests"]:
        print("last requests (event 12290, newest first):")
        for event in status["last_requests"]:
            print("  " + event_line(event))
    return 0


def _stamp(seconds: float) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def event_line(event: dict) -> str:
    """One 12290 event as the Key Management Service log shows its fields."""
    return (f"{event.get('time')} 12290 {event.get('result')} from {event.get('workstation')} "
            f"(CMID {event.get('cmid')}, client time {event.get('client_time')}, N {event.get('minimum_count')}, "
            f"VM {event.get('vm')}, licence state {event.get('licence_state')}, expiry in "
            f"{event.get('minutes_to_expiry')} min, activation id {event.get('activation_id')}, "
            f"count {event.get('count')})")


def _protocols(text: str) -> tuple[int, ...]:
    try:
        versions = tuple(sorted({int(v) for v in text.split(",") if v.strip()}))
    except ValueError:
        versions = ()
    if not versions or set(versions) - {4, 5, 6}:
        raise UsageError(f"--protocols {text}: give KMS versions among 4, 5 and 6, e.g. 4 or 4,5,6")
    return versions


def add_host(add) -> None:
    p = add("host", "run the reference KMS host in the foreground",
            "  kmsconf host --listen 127.0.0.1:1688\n  kmsconf host --key-group server-b --db host.sqlite")
    p.add_argument("--listen", default="127.0.0.1:1688", metavar="ADDR:PORT", help="address to listen on (slmgr /sprt on Windows)")
    p.add_argument("--activation-interval", type=int, default=120, metavar="MIN", help="retry interval (slmgr /sai on Windows)")
    p.add_argument("--renewal-interval", type=int, default=10080, metavar="MIN", help="renewal interval (slmgr /sri on Windows)")
    p.add_argument("--key-group", default=None, help="host key: client-vl, server-a, server-b, server-c or a catalog slug")
    p.add_argument("--host-build", type=int, default=26100, metavar="BUILD", help="host OS build, e.g. 7601 or 26100")
    p.add_argument("--max-cache", type=int, default=50, metavar="N",
                   help="the most client entries one application's cache holds: 50 (2 x 25, the highest N of any "
                        "product) on a genuine host; a load test may raise it to count more distinct clients")
    p.add_argument("--protocols", default="4,5,6", metavar="V[,V]",
                   help="KMS protocol versions served (a Windows 7 / Server 2008 R2 host as the guide describes "
                        "it: 4; later updates added 5 and 6)")
    p.add_argument("--host-os", default=None, metavar="NAME",
                   help="host OS name, checked against Table 2 (e.g. 'Windows 7' carries only client-vl)")
    p.add_argument("--db", default=":memory:", help="SQLite database for the client table and settings")
    p.add_argument("--event-log", default=None, metavar="PATH", help="JSON event lines ('-' for stderr)")
    p.add_argument("--low-priority", action="store_true", help="lower the process priority (slmgr /cpri on Windows)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--dns-publish", dest="dns_publish", action="store_true", help="publish SRV records (slmgr /sdns on Windows)")
    g.add_argument("--no-dns-publish", dest="dns_publish", action="store_false", help="do not publish (slmgr /cdns on Windows)")
    p.add_argument("--dns-server", metavar="HOST[:PORT]", help="DNS server taking dynamic updates")
    p.add_argument("--dns-domain", action="append", default=[], metavar="DOMAIN[,PRIO[,WEIGHT]]",
                   help="publish _vlmcs._tcp in this domain (repeatable: the DnsDomainPublishList)")
    p.add_argument("--dns-hostname", default="kms", help="this host's label in each domain (default kms)")
    p.add_argument("--dns-unpublish-on-exit", action="store_true", help="remove the records on clean shutdown")
    p.add_argument("--control", action="store_true", help="offer the loopback test-control channel")
    p.add_argument("--max-connections", type=int, default=2048,
                   help="per worker; beyond it a new connection closes the least recently active one")
    p.add_argument("--idle-timeout", type=float, default=30.0, metavar="SECONDS")
    p.add_argument("--bind-timeout", type=float, default=5.0, metavar="SECONDS",
                   help="a new connection's limit until a bind is accepted (default 5)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="host processes sharing the port and the client table (default: the number of CPUs; "
                        "1 with --control). With --db :memory: they share the table in shared memory")
    p.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
                   help="event loop: uvloop when installed (auto), or asyncio's own")
    p.set_defaults(func=cmd_host, dns_publish=False)


def add_host_status(add) -> None:
    p = add("host-status", "show a host's count, cache, key group, ePID and intervals from its database (slmgr /dli on Windows)",
            "  kmsconf host-status --db host.sqlite --json")
    p.add_argument("--db", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_host_status)
