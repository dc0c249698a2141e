"""A faulty reference host as a process of its own, for the suite's --target-cmd (run as a subprocess).

    python tests/faulty_host_process.py PORT FAULT [DB]

FAULT is a fault's name in faults.py ("none": a host without a fault; "baseline:NAME": the host of that fault
without the fault itself, e.g. the key group it needs). DB is the SQLite file the
host keeps its clients in (the suite gives {dir}/host.sqlite); without it the host keeps them in memory.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from faults import FAULTS  # noqa: E402
from faulty import host_thread  # noqa: E402


def main() -> None:
    port, name = int(sys.argv[1]), sys.argv[2]
    db = sys.argv[3] if len(sys.argv) > 3 else ":memory:"
    if name == "none":
        config = {}
    elif name.startswith("baseline:"):
        config = next(f.baseline for f in FAULTS if f.name == name.removeprefix("baseline:"))
    else:
        config = next(f.config for f in FAULTS if f.name == name)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with host_thread(host="127.0.0.1", port=port, db=db, **config):
        print(f"faulty host ({name}) listening on 127.0.0.1:{port}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
