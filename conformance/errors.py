"""Errors shared by the command line and its subcommands, and the exit statuses they end in (as the suite's)."""

EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_MISSING_TOOL = 6  # a program the command needs is not installed (kmsconf report: Allure)


class UsageError(Exception):
    """A bad argument or file: printed as one line, exit status 2."""


class HostUnreachable(Exception):  # not net.outcomes.Unreachable, an answer the runner classified
    """No KMS host to talk to: no connection at all, or (plain) something listening that does not speak DCE/RPC.
    Printed as one line, exit status 3 (as the suite's)."""

    def __init__(self, address: str, why: OSError | str, plain: bool = False):
        reason = why if isinstance(why, str) else (why.strerror or str(why))
        # plain: something answers there, but not a KMS host (the reason says what)
        super().__init__(f"{address}: {reason}" if plain else
                         f"cannot reach {address} ({reason}); is the KMS host running there?")
