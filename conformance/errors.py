"""Errors shared by the command line and its subcommands."""


class UsageError(Exception):
    """A bad argument or file: printed as one line, exit status 2."""
