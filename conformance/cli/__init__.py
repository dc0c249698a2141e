"""`kmsconf`: one entry point for the reference host and client, decoding, and the suite."""

from __future__ import annotations

import argparse
import os
import sys

from conformance.errors import EXIT_UNREACHABLE, EXIT_USAGE, HostUnreachable, UsageError

from . import capture, client, fuzz, host, lab, suite

# in the order `kmsconf --help` lists them
COMMANDS = (host.add_host, host.add_host_status, client.add_activate, capture.add_decode, lab.add_simulate,
            suite.add_matrix, lab.add_dns_lab, fuzz.add_fuzz, fuzz.add_fuzz_merge, capture.add_replay,
            suite.add_clauses, suite.add_report, suite.add_check)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kmsconf", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parser.commands = sub.choices  # name -> the subcommand's parser (main shows its usage for its mistakes)

    def add(name: str, help_text: str, examples: str):
        return sub.add_parser(name, help=help_text, description=help_text, epilog="examples:\n" + examples,
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    for add_command in COMMANDS:
        add_command(add)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # a subcommand's mistake shows that subcommand's usage, not the list of commands
        _unrecognized(parser, args.command, extra)
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"kmsconf {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except HostUnreachable as exc:
        print(f"kmsconf {args.command}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader (e.g. `| head`) went away: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _unrecognized(parser: argparse.ArgumentParser, command: str, extra: list[str]) -> None:
    import difflib
    import re

    sub = parser.commands[command]
    known = re.findall(r"--[\w-]+", sub.format_usage())
    near = difflib.get_close_matches(extra[0].partition("=")[0], known, n=1) if extra[0].startswith("-") else []
    sub.error(f"unrecognized arguments: {' '.join(extra)}" + (f" (did you mean {near[0]}?)" if near else ""))
