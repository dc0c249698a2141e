"""The process's event loop and file limit, for whatever serves or drives many connections at once."""

from __future__ import annotations

import asyncio
import resource


def new_event_loop(kind: str = "auto") -> asyncio.AbstractEventLoop:
    """uvloop (libuv) when installed: about a third less loop overhead per exchange than asyncio's own."""
    if kind not in ("auto", "asyncio", "uvloop"):
        raise ValueError(f"event loop {kind!r}: auto, asyncio or uvloop")
    if kind != "asyncio":
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise ValueError("uvloop is not installed (pip install uvloop)") from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's open-file limit towards `wanted` (up to the hard limit); the limit it got."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft
