"""The reference host says what stops it: a --db it must not or cannot write is one line and an exit status, the file
as it was; a disk that fills while it serves is one line when recording fails and one when it works again, and
host-status shows it. A full disk is a file size limit (RLIMIT_FSIZE) on the host's process: its writes fail as
on a disk with no room, and the limit can be lifted again from outside (prlimit)."""

import hashlib
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from conformance import catalog
from conformance.reference.client.activation import activate
from conformance.wire.requests import build_request

ROOT = Path(__file__).resolve().parents[1]
UNLIMITED = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)


def host(db: Path, *, fsize: int | None = None, **kwargs):
    """`kmsconf host --db DB`, with at most `fsize` bytes per file it writes."""
    limit = (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, resource.RLIM_INFINITY))) if fsize is not None \
        else None
    cwd = next(p for p in db.parents if p.is_dir())  # the --db as a user types it: relative
    return subprocess.Popen([sys.executable, "-m", "conformance.cli", "host", "--listen", "127.0.0.1:0", "--db",
                             str(db.relative_to(cwd)), "--workers", "1"], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=limit, **kwargs)


def refused(db: Path, **kwargs) -> subprocess.CompletedProcess:
    proc = host(db, **kwargs)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line(proc, status: int, says: str) -> None:
    assert proc.returncode == status and proc.stdout == "", (proc.returncode, proc.stdout, proc.stderr)
    assert len(proc.stderr.strip().splitlines()) == 1 and says in proc.stderr, proc.stderr


def a_host_database(tmp_path: Path) -> Path:
    db = tmp_path / "host.sqlite"
    proc = host(db)
    assert "listening on" in proc.stdout.readline()
    proc.terminate()
    proc.wait(10)
    return db


@pytest.mark.parametrize("content,says", [(b"client list\n", "not an SQLite file"), (None, "its tables: notes")])
def test_a_file_that_is_no_host_database_is_refused_untouched(tmp_path, content, says):
    db = tmp_path / "host.sqlite"
    if content is None:  # another program's SQLite database
        import sqlite3

        with sqlite3.connect(db) as other:
            other.execute("CREATE TABLE notes (text)")
    else:
        db.write_bytes(content)
    before = digest(db)
    one_line(refused(db), 2, f"--db {db.name} is not a kmsconf host database")
    assert digest(db) == before and sorted(p.name for p in tmp_path.iterdir()) == ["host.sqlite"]


def test_a_path_the_host_cannot_write_is_one_line(tmp_path):
    one_line(refused(tmp_path / "missing" / "host.sqlite"), 2, "cannot write there")


def test_a_full_disk_at_start_is_one_line_and_exit_1_and_leaves_the_database_as_it_was(tmp_path):
    new = tmp_path / "new" / "host.sqlite"
    new.parent.mkdir()
    one_line(refused(new, fsize=0), 1, "cannot write to the disk")
    assert not list(new.parent.iterdir()), "no empty database left behind"
    db = a_host_database(tmp_path)
    before = digest(db)
    one_line(refused(db, fsize=1024), 1, f"--db {db.name}: cannot write to the disk")
    assert digest(db) == before


def test_a_disk_that_fills_while_serving_is_one_line_then_one_when_it_works_again(tmp_path):
    db = tmp_path / "host.sqlite"
    proc = host(db)
    address, port = proc.stdout.readline().split()[-1].rsplit(":", 1)
    edition = catalog.load().edition("Windows 10/11 Enterprise")

    def activated() -> bool:
        try:
            return activate(address, int(port), build_request(edition), timeout=5).verified
        except OSError:
            return False

    try:
        assert all(activated() for _ in range(3))
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (1024, resource.RLIM_INFINITY))
        assert not any(activated() for _ in range(4)), "never an answer it could not record"
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, UNLIMITED)
        assert all(activated() for _ in range(2))
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    assert "cannot record requests in host.sqlite" in lines[0] and "closed unanswered" in lines[0], lines
    assert "recording again in host.sqlite" in lines[1] and "4 request(s) were closed unanswered" in lines[1], lines
    status = subprocess.run([sys.executable, "-m", "conformance.cli", "host-status", "--db", str(db)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    failed = [line for line in status.stdout.splitlines() if line.startswith("recording failed")]
    assert len(failed) == 1 and "4 request(s) closed unanswered" in failed[0], status.stdout
