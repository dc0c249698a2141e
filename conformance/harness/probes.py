"""What the suite asks a target before any check runs: does the command start a host, does the port speak
DCE/RPC, does the control channel belong to the host under test. Each answers None, or one line saying what
happened instead; the options (`options`) and `kmsconf fuzz` turn that line into their own error.
"""

from __future__ import annotations

import uuid

from conformance.net.address import format_address


def try_start(command: str, timeout: float) -> str | None:
    """None when the command starts and serves on the port it is given within `timeout` seconds, else what
    happened (one line)."""
    from conformance.process.managed import ManagedHost
    from conformance.process.monitor import TargetCommand, TargetStartError

    host = ManagedHost(TargetCommand.parse(command), startup_timeout=max(timeout, 5.0))
    try:
        host.start()
    except TargetStartError as exc:
        return str(exc)
    finally:
        host.close()
    return None


def speaks_rpc(address: tuple[str, int], timeout: float) -> str | None:
    """None when a DCE/RPC bind gets a bind_ack or a bind_nak there, else what came instead: a wrong port can
    land on another TCP service, and a hundred checks would each wait out its silence."""
    from conformance.net.outcomes import BindAck, BindNak
    from conformance.net.runner import Runner

    try:
        with Runner(*address, min(timeout, 5.0)).session() as session:
            answer = session.bind()
    except OSError as exc:
        return exc.strerror or str(exc)
    return None if isinstance(answer, (BindAck, BindNak)) else answer.describe()


def control_belongs(control: tuple[str, int], target: tuple[str, int], timeout: float,
                    cmid: uuid.UUID | None = None) -> str | None:
    """None when the control channel controls the host behind --target (one request there moves its
    counter of answered requests), else why not. A port-forward in between is fine."""
    from conformance import catalog
    from conformance.net.runner import Runner
    from conformance.wire.requests import build_request

    from conformance.net.control import ControlChannel

    from .target import AUDIT_WORKSTATION, audit_cmid

    try:
        channel = ControlChannel.tcp(*control, timeout=timeout)
        before = channel.requests_answered()
    except (OSError, ValueError, KeyError) as exc:
        return f"no control channel answers there ({getattr(exc, 'strerror', None) or exc})"
    edition = catalog.load().edition("Windows 10/11 Enterprise")
    request = build_request(edition, workstation=AUDIT_WORKSTATION, cmid=cmid or audit_cmid(target))
    Runner(*target, timeout).activate(request)
    after = channel.requests_answered()
    if after <= before:
        return (f"its host did not see a request sent to --target {format_address(*target)}: it controls "
                f"another host")
    return None
