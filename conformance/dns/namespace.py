"""A private network and mount namespace for one run: loopback only, its own /etc/resolv.conf.

A holder process (`unshare --net --mount`) keeps the namespace alive; it brings `lo` up,
bind-mounts a resolv.conf of ours over /etc/resolv.conf inside its mount namespace only
(propagation private: the machine's file is never touched) and waits on its stdin, so it
ends with us even if we are killed, as do the commands run in it (`nsenter`, then a parent-death
signal): nothing keeps the namespace alive after us. Sockets of this process are made inside it
by a short-lived thread that joins its network namespace.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Callable, TypeVar

CLONE_NEWNET = 0x40000000
TOOLS = ("unshare", "nsenter", "setpriv", "ip", "mount")
T = TypeVar("T")

# sh inside the new namespaces: loopback up, our resolv.conf over the machine's, then wait for our end
_HOLDER = ('ip link set lo up && mount --bind "$1" /etc/resolv.conf && echo ready && read _ignored; '
           'exit 0')


def unavailable() -> str | None:
    """None when a namespace can be made here, else why not (in words for a skip)."""
    if os.geteuid() != 0:
        return "needs root (a private network and mount namespace: `sudo pytest ...`)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"needs {', '.join(missing)} (Debian packages util-linux, iproute2, mount; `make setup` installs them)"
    return None


class Namespace:
    """Enter with `with Namespace(resolv_conf_text) as ns`; ns.command(argv), ns.socket(...)."""

    def __init__(self, resolv_conf: str):
        self.workdir = Path(tempfile.mkdtemp(prefix="kmsconf-netns-"))
        self.resolv_conf = self.workdir / "resolv.conf"
        self.resolv_conf.write_text(resolv_conf)
        self._holder: subprocess.Popen | None = None
        self._netns_fd: int | None = None

    def start(self) -> "Namespace":
        why = unavailable()
        if why:
            raise RuntimeError(f"no private namespace: {why}")
        self._holder = subprocess.Popen(
            ["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c", _HOLDER, "holder",
             str(self.resolv_conf)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self._holder.stdout.readline()
        if line.strip() != "ready":
            error = self._holder.stderr.read() if self._holder.poll() is not None else ""
            self.stop()
            raise RuntimeError(f"could not make a private namespace: {error.strip() or line.strip() or 'no answer'}")
        self._netns_fd = os.open(f"/proc/{self.pid}/ns/net", os.O_RDONLY)
        return self

    @property
    def pid(self) -> int:
        assert self._holder is not None
        return self._holder.pid

    def command(self, argv: list[str]) -> list[str]:
        """argv run inside both namespaces, in this process's working directory; killed if we die (so that
        nothing keeps the namespace alive)."""
        return ["nsenter", f"--target={self.pid}", "--net", "--mount", f"--wd={os.getcwd()}", "--",
                "setpriv", "--pdeathsig", "KILL", "--", *argv]

    def run_inside(self, fn: Callable[[], T]) -> T:
        """fn() on a thread that has joined the namespace's network (sockets it makes stay there)."""
        result: dict[str, object] = {}

        def enter_and_run() -> None:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.setns(self._netns_fd, CLONE_NEWNET) != 0:
                errno = ctypes.get_errno()
                result["error"] = OSError(errno, f"setns: {os.strerror(errno)}")
                return
            try:
                result["value"] = fn()
            except BaseException as exc:  # handed to the caller's thread
                result["error"] = exc

        thread = threading.Thread(target=enter_and_run, name="kmsconf-netns")
        thread.start()
        thread.join()
        if "error" in result:
            raise result["error"]  # type: ignore[misc]
        return result["value"]  # type: ignore[return-value]

    def socket(self, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM, proto: int = 0) -> socket.socket:
        return self.run_inside(lambda: socket.socket(family, kind, proto))

    def stop(self) -> None:
        if self._netns_fd is not None:
            os.close(self._netns_fd)
            self._netns_fd = None
        if self._holder is not None:
            if self._holder.poll() is None:
                self._holder.stdin.close()  # its `read` returns: the holder exits, the mount goes with it
                try:
                    self._holder.wait(5)
                except subprocess.TimeoutExpired:
                    self._holder.kill()
                    self._holder.wait()
            for stream in (self._holder.stdout, self._holder.stderr):
                stream.close()
            self._holder = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "Namespace":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
