"""A host's clock moved by libfaketime (Debian `faketime`): preloaded into the host, offset through a file.

The offset file holds "+SECONDS" relative to real time, read at every clock call (FAKETIME_NO_CACHE), so
moving the clock is one atomic write and the host's time keeps running. Monotonic clocks are left alone: a
host's timers (idle connections, the event loop) must not jump 30 days. A clock is only as good as its
reach: a statically linked binary, or one that reads the clock without libc, never sees the offset, so
`reached` looks for the library in the host's processes before any time clause is judged.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

LIBRARY = "libfaketime.so.1"
SEARCHED = ("/usr/lib/*/faketime", "/usr/lib/faketime", "/usr/local/lib/faketime", "/usr/lib64/faketime")
INSTALL_HINT = "install libfaketime (Debian/Ubuntu: apt-get install faketime; `make setup` does)"


def find_library() -> Path | None:
    """libfaketime.so.1 where the distribution puts it, or KMSCONF_LIBFAKETIME."""
    given = os.environ.get("KMSCONF_LIBFAKETIME")
    if given:
        return Path(given) if Path(given).is_file() else None
    for pattern in SEARCHED:
        for folder in sorted(glob.glob(pattern)):
            candidate = Path(folder) / LIBRARY
            if candidate.is_file():
                return candidate
    return None


class FakeClock:
    """The offset of one host's clock from real time, in a file of its own directory."""

    def __init__(self, library: Path, directory: Path):
        self.library = library
        self.file = directory / "faketime.rc"
        self.offset = 0.0
        self.set(0.0)

    def environment(self, inherited: dict[str, str]) -> dict[str, str]:
        """What the host's environment needs: the library preloaded before anything else it preloads."""
        preload = " ".join(filter(None, [str(self.library), inherited.get("LD_PRELOAD", "")]))
        return {"LD_PRELOAD": preload, "FAKETIME_TIMESTAMP_FILE": str(self.file), "FAKETIME_NO_CACHE": "1",
                "FAKETIME_DONT_FAKE_MONOTONIC": "1"}

    def set(self, offset: float) -> None:
        """The host's clock is now real time + `offset` seconds (atomic: a clock call never reads half a line)."""
        self.offset = offset
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(f"{'+' if offset >= 0 else '-'}{abs(offset):.0f}\n")
        tmp.replace(self.file)

    def reached(self, pids: list[int]) -> str | None:
        """None when the library is mapped into every process of the host (a forking host's children inherit
        it), else why its clock cannot be moved."""
        if not pids:
            return "the host is not running"
        for pid in pids:
            try:
                maps = Path(f"/proc/{pid}/maps").read_text()
            except OSError:
                continue  # a child that ended meanwhile
            if self.library.name in maps:
                continue
            exe = _exe(pid)
            if "libc.so" not in maps and "/libc-" not in maps:
                return (f"{exe} does not load libc (a statically linked binary): libfaketime cannot reach its "
                        f"clock, so no time clause can be judged by moving it")
            return f"libfaketime is not mapped in {exe} (pid {pid}): its clock did not move"
        return None


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return f"process {pid}"
