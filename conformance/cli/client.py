"""`kmsconf activate`: the reference client's one activation exchange, at an address or through DNS discovery."""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

from conformance.errors import HostUnreachable, UsageError
from conformance.net.address import format_address, parse_address

from .output import print_json


def cmd_activate(args: argparse.Namespace) -> int:
    from conformance import catalog
    from conformance.net.runner import BindOptions
    from conformance.reference.client.activation import activate
    from conformance.wire.requests import build_request

    if not args.target and not args.discover:
        raise UsageError("give HOST[:PORT] (like /skms) or --discover DOMAIN with --dns-server")
    if args.state and not args.discover:
        raise UsageError("--state keeps the host discovery found: give it with --discover DOMAIN")
    if bool(args.product) == bool(args.gvlk):
        raise UsageError("name the product with --product NAME-or-SKU, or give its setup key with --gvlk KEY")
    try:
        edition = catalog.load().edition_by_gvlk(args.gvlk) if args.gvlk else catalog.load().edition(args.product)
    except (LookupError, ValueError) as exc:
        raise UsageError(str(exc.args[0] if exc.args else exc)) from None
    try:
        cmid = uuid.UUID(args.cmid) if args.cmid else None
    except ValueError:
        raise UsageError(f"--cmid {args.cmid!r} is not a GUID") from None
    request = build_request(edition, cmid=cmid, workstation=args.workstation, protocol=args.protocol)
    options = BindOptions(ndr32=True, ndr64=args.ndr != 32, btfn=not args.no_btfn,
                          multiplex=not args.no_multiplex, prefer_ndr64=args.ndr != 32)
    if args.target:
        host, port = parse_address(args.target)
        try:
            result = activate(host, port, request, options, timeout=args.timeout)
        except OSError as exc:
            raise HostUnreachable(format_address(host, port), exc) from None
    else:
        from conformance.reference.client.discovery import CACHED_HOST_FILE, DiscoveringClient, DiscoveryError

        if not args.dns_server:
            raise UsageError("--discover needs --dns-server HOST[:PORT]")
        client = DiscoveringClient(args.discover, parse_address(args.dns_server, 53))
        cache = Path(args.state) / CACHED_HOST_FILE if args.state else None
        if cache is not None:
            client.load_cache(cache)
        last = {}  # the last attempt's activation, for the report after discovery

        def attempt(h: str, p: int) -> bool:
            try:
                last["activation"] = activate(h, p, request, options, timeout=args.timeout)
            except OSError:
                return False
            return last["activation"].verified

        try:
            host, port = client.run(attempt)
        except DiscoveryError as exc:
            print(f"kmsconf activate: {exc} (0x{exc.code:08X})", file=sys.stderr)
            return 1
        finally:
            if cache is not None:
                client.save_cache(cache)
        result = last["activation"]
        if not args.json:
            print(f"discovered  : {host}:{port}")
    if args.json:
        print_json(result.to_json())
    else:
        print(f"product     : {edition.name} (KMS V{request.major})")
        if result.response:
            r = result.response.response
            print(f"ePID        : {r.epid}")
            if result.response.hwid:
                print(f"HwId        : {result.response.hwid.hex().upper()}")
            print(f"count       : {r.count} (needs {request.n_policy})")
            print(f"intervals   : activation {r.activation_interval} min, renewal {r.renewal_interval} min")
        for problem in result.problems:
            print(f"problem     : {problem}")
        print(f"verified    : {'yes' if result.verified else 'NO'}; activated: {'yes' if result.activated else 'no'}")
    return 0 if result.verified else 1


def add_activate(add) -> None:
    p = add("activate", "one activation exchange against a host; exit 0 only if the response verified",
            "  kmsconf activate 127.0.0.1:1688 --product 'Windows 7 Enterprise'\n"
            "  kmsconf activate 127.0.0.1:1688 --product 34e1ae55-27f8-4950-8877-7a03be5fb181 --protocol 6 --json")
    p.add_argument("target", metavar="HOST[:PORT]", nargs="?", help="the KMS host (omit with --discover)")
    p.add_argument("--discover", action="append", default=[], metavar="DOMAIN",
                   help="find the host through _vlmcs._tcp SRV records in DOMAIN (repeatable: suffix list)")
    p.add_argument("--dns-server", metavar="HOST[:PORT]", help="DNS server for --discover")
    p.add_argument("--state", metavar="DIR", help="with --discover: keep the host that answered in DIR and use it "
                   "first next time, asking DNS again once it fails (as a Windows client caches its KMS host)")
    p.add_argument("--product", help="edition name or SKU GUID from the catalog")
    p.add_argument("--gvlk", metavar="KEY", help="the edition's KMS client setup key (Table 6), instead of --product")
    p.add_argument("--protocol", type=int, choices=(4, 5, 6), help="KMS version (default: the edition's)")
    p.add_argument("--ndr", type=int, choices=(32, 64), default=64, help="transfer syntax to prefer")
    p.add_argument("--no-btfn", action="store_true", help="no bind-time feature negotiation context")
    p.add_argument("--no-multiplex", action="store_true", help="clear PFC_CONC_MPX in the bind")
    p.add_argument("--cmid", help="client machine id (default: random)")
    p.add_argument("--workstation", help="workstation name (default: this host's name)")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_activate)
