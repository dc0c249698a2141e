"""`kmsconf decode` and `kmsconf replay`: a capture's KMS exchanges decoded, or re-sent to a target and compared."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from conformance.errors import HostUnreachable, UsageError
from conformance.net.address import format_address, parse_address

from .output import print_json


def cmd_decode(args: argparse.Namespace) -> int:
    from conformance.pcap.decode import decode_capture, exchanges_json
    from conformance.pcap.reader import CaptureError

    items = []
    for name in args.files:
        try:
            decoded = decode_capture(Path(name), args.port)
        except CaptureError as exc:
            raise UsageError(str(exc)) from None
        items += [dict(item, file=name) for item in exchanges_json(decoded)]
    if args.json:
        print_json(items)
        return 0
    for n, item in enumerate(items, 1):
        source = f"{item['file']}: " if len(args.files) > 1 else ""
        print(f"== exchange {n}: {source}{item['client']} -> {item['host']} (NDR{item['ndr']}, "
              f"call_id {item.get('call_id')})")
        for side in ("request", "response"):
            print(f"  {side}:")
            for key, value in (item.get(side) or {}).items():
                print(f"    {key:<20} {value}")
        for err in item.get("errors", []):
            print(f"  error: {err}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from conformance.pcap.reader import CaptureError
    from conformance.pcap.replay import differences, replay
    from conformance.wire.hresult import SL_E_VL_INVALID_TIMESTAMP

    host, port = parse_address(args.target)
    try:
        rows = replay(Path(args.file), host, port, refresh=args.refresh, port_filter=args.port, timeout=args.timeout)
    except CaptureError as exc:
        raise UsageError(str(exc)) from None
    except ConnectionError as exc:
        raise HostUnreachable(format_address(host, port), str(exc)) from None
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


def add_decode(add) -> None:
    p = add("decode", "decode the KMS exchanges in a pcap/pcapng file (decrypting V5/V6, verifying hashes)",
            "  kmsconf decode capture.pcap\n  kmsconf decode ../shared/captures/third-party/*.pcap\n"
            "  kmsconf decode capture.pcapng --port 21688 --json")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--port", type=int, help="only TCP connections on this port (default: any)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_decode)


def add_replay(add) -> None:
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
