"""Safe to point at a production host: `pytest --target` runs the suite alone, a target outside loopback gets only
the safe clauses (and at most the audit's one CMID), an installed wheel runs from an empty directory, IPv6 works."""

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conformance.faults.host import faulty_host_thread
from conformance.harness import clauses
from conformance.net.address import has_ipv6_loopback
from conformance.reference.host.config import HostConfig
from conformance.reference.host.server import HostThread

ROOT = Path(__file__).resolve().parents[1]
no_ipv6 = pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")


class Recording(HostThread):
    """A reference host that notes every KMS request's (application, CMID) entry, answered or refused."""

    def __init__(self, config: HostConfig):
        super().__init__(config)
        self.entries: set[tuple[uuid.UUID, uuid.UUID]] = set()
        self.host.on_pdu = self._note

    @property
    def cmids(self) -> set[uuid.UUID]:
        return {cmid for _, cmid in self.entries}

    def per_application(self) -> dict[uuid.UUID, int]:
        out: dict[uuid.UUID, int] = {}
        for app, _ in self.entries:
            out[app] = out.get(app, 0) + 1
        return out

    def _note(self, peer, data, reply) -> None:
        if reply.decision is not None and reply.decision.opened is not None:
            request = reply.decision.opened.request
            self.entries.add((request.app_id, request.cmid))


def pytest_run(tmp_path, *args, cwd=ROOT, python=sys.executable, timeout=300):
    return subprocess.run([python, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def test_target_in_the_checkout_collects_the_suite_alone(tmp_path):
    with HostThread(HostConfig(port=0)) as thread:
        host, port = thread.host.address
        proc = pytest_run(tmp_path, "--target", f"{host}:{port}", "--collect-only", "-q")
    ids = [line for line in proc.stdout.splitlines() if "::" in line]
    assert ids and all(i.startswith("conformance/suite/") for i in ids), proc.stdout[-2000:]


def test_remote_target_gets_the_safe_clauses_and_one_cmid(tmp_path):
    summary = tmp_path / "summary.json"
    with Recording(HostConfig(host="127.0.0.2", port=0)) as thread:
        host, port = thread.host.address
        proc = pytest_run(tmp_path, "--target", f"{host}:{port}", "--assume-remote", "--summary", str(summary))
        received, per_application = set(thread.cmids), thread.per_application()
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert len(received) <= 1, f"{len(received)} CMIDs reached the host"
    assert set(per_application.values()) == {1}, f"more than one entry in one application's count: {per_application}"
    records = {r["clause"]: r for r in json.loads(summary.read_text())}
    for cid, record in records.items():
        if clauses.get(cid).footprint != "safe":
            assert record["verdict"] == "skip" and ("--intrusive" in record["message"] or "-m fuzz" in record["message"]), record
    assert "left out on a host that may be production" in out, out[-2000:]
    assert f"footprint: {len(per_application)} client entr" in out, out[-2000:]


@pytest.mark.parametrize("selection", [["-m", "thr or rob"], ["--clause", "KMS-THR"], ["--safe-only", "--intrusive"]],
                         ids=["area-marker", "area-clause", "safe-only-wins"])
def test_an_area_selection_does_not_open_the_gate(tmp_path, selection):
    with Recording(HostConfig(host="127.0.0.2", port=0)) as thread:
        host, port = thread.host.address
        args = ["--target", f"{host}:{port}", *selection]
        proc = pytest_run(tmp_path, *(args if "--safe-only" in selection else [*args, "--assume-remote"]),
                          "--summary", str(tmp_path / "s.json"))
        received = set(thread.cmids)
    assert proc.returncode == 0 and len(received) <= 1, (received, proc.stdout[-2000:])
    if "--safe-only" in selection:  # and it says so, at the start and where it lists what it left out
        assert "--safe-only wins over --intrusive" in proc.stdout.split("collected")[0], proc.stdout[:1000]
        assert "--safe-only keeps them out" in proc.stdout and "--intrusive runs them" not in proc.stdout


def test_intrusive_runs_the_counting_clauses_on_a_remote_target(tmp_path):
    summary = tmp_path / "summary.json"
    with Recording(HostConfig(host="127.0.0.2", port=0)) as thread:
        host, port = thread.host.address
        proc = pytest_run(tmp_path, "--target", f"{host}:{port}", "--assume-remote", "--intrusive",
                          "--clause", "KMS-THR-001", "--summary", str(summary))
        received = len(thread.cmids)
    records = {r["clause"]: r for r in json.loads(summary.read_text())}
    assert proc.returncode == 0 and records["KMS-THR-001"]["verdict"] == "pass", proc.stdout[-2000:]
    assert received >= 4  # the audit's CMID and THR-001's fresh ones


@no_ipv6
def test_suite_and_client_over_ipv6(tmp_path):
    summary = tmp_path / "summary.json"
    with HostThread(HostConfig(host="::1", port=0)) as thread:
        host, port = thread.host.address
        assert host == "::1"
        proc = pytest_run(tmp_path, "--target", f"[::1]:{port}", "--clause", "KMS-RPC,KMS-MSG-001",
                          "--summary", str(summary), "--evidence-dir", str(tmp_path / "evidence"))
        client = subprocess.run([sys.executable, "-m", "conformance.cli", "activate", f"[::1]:{port}",
                                 "--product", "Windows 10/11 Enterprise"], capture_output=True, text=True, timeout=60)
    records = json.loads(summary.read_text())
    assert proc.returncode == 0 and {r["verdict"] for r in records} == {"pass"}, proc.stdout[-2000:]
    assert client.returncode == 0 and "verified    : yes" in client.stdout, client.stdout + client.stderr
    assert list((tmp_path / "evidence").glob("*.pcap"))


@no_ipv6
def test_host_listens_on_ipv6_and_a_bare_v6_target_says_how_to_write_it(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "conformance.cli", "host", "--listen", "[::1]:0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("kmsconf host listening on [::1]:"), line
        port = int(line.rsplit(":", 1)[1])
        client = subprocess.run([sys.executable, "-m", "conformance.cli", "activate", f"[::1]:{port}",
                                 "--product", "Windows 7 Enterprise"], capture_output=True, text=True, timeout=60)
        assert client.returncode == 0, client.stdout + client.stderr
    finally:
        proc.terminate()
        proc.wait(10)
    bare = pytest_run(tmp_path, "--target", "::1")
    assert bare.returncode == 2 and "[::1]:1688" in bare.stderr and len(bare.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The project built as a wheel and installed, not editable, into a fresh venv."""
    base = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(base / "dist"), str(ROOT)],
                   check=True, capture_output=True, timeout=600)
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    (wheel,) = (base / "dist").glob("kms_conformance-*.whl")
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True, capture_output=True,
                   timeout=900)
    empty = base / "empty"
    empty.mkdir()
    return python, empty


def test_installed_wheel_runs_the_suite_from_an_empty_directory(tmp_path, installed):
    python, empty = installed
    with faulty_host_thread(HostConfig(port=0), {"ignore-opnum", "ignore-key-group", "ignore-time"}) as thread:
        host, port = thread.host.address
        plain = pytest_run(tmp_path, "--target", f"{host}:{port}", "-q", cwd=empty, python=python)
        declared = pytest_run(tmp_path, "--target", f"{host}:{port}", "--expect", "vlmcsd", "-q",
                              "--clause", "KMS-RPC-008,KMS-GRP-003,KMS-TIME-003", "--summary", str(tmp_path / "s.json"),
                              cwd=empty, python=python)
    assert plain.returncode == 1 and "KMS conformance:" in plain.stdout, plain.stdout[-2000:]  # GRP-003 fails
    summary = json.loads((empty / "reports" / "summary.json").read_text())
    assert len(summary) >= 50, "the whole suite ran from the installed package"
    verdicts = {r["clause"]: r["verdict"] for r in json.loads((tmp_path / "s.json").read_text())}
    assert declared.returncode == 0 and set(verdicts.values()) == {"xfail"}, declared.stdout[-2000:]
    assert not (empty / "conformance").exists() and shutil.which("pytest", path=str(python.parent))


def test_installed_wheel_says_what_it_lacks_and_shows_a_subcommand_s_own_usage(tmp_path, installed):
    python, empty = installed
    kmsconf = str(python.parent / "kmsconf")
    bare = {"PATH": str(python.parent), "HOME": str(tmp_path)}  # no Allure, no npx, no node

    def run(*args, env=bare, cwd=empty):
        return subprocess.run([kmsconf, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)

    report = run("report")
    assert report.returncode == 6 and report.stdout == "", (report.returncode, report.stdout[-500:])
    assert len(report.stderr.strip().splitlines()) == 1 and "npm install -g allure@" in report.stderr, report.stderr
    mistake = run("check", "--taget", "127.0.0.1:1688")
    assert mistake.returncode == 2 and mistake.stderr.startswith("usage: kmsconf check"), mistake.stderr
    assert mistake.stderr.strip().splitlines()[-1] == ("kmsconf check: error: unrecognized arguments: --taget "
                                                       "127.0.0.1:1688 (did you mean --target?)"), mistake.stderr
    with HostThread(HostConfig(port=0)) as thread:
        address = "{}:{}".format(*thread.host.address)
        check = run("check", "--target", address, "--clause", "KMS-RPC-001")
        node = shutil.which("npx") and (ROOT / "node_modules" / ".bin" / "allure").exists()
        # from a directory of this checkout: npx finds the Allure that package.json pins, nothing downloaded
        found = run("report", "--target", address, "--clause", "KMS-RPC-001", "--results", str(tmp_path / "r"),
                    "--out", str(tmp_path / "page"), cwd=ROOT / "tests",
                    env=bare | {"PATH": f"{python.parent}:{Path(shutil.which('npx')).parent}"}) if node else None
    assert check.returncode == 0 and "warning" not in (check.stdout + check.stderr).lower(), check.stdout[-2000:]
    if found is not None:
        assert found.returncode == 0 and (tmp_path / "page" / "index.html").is_file(), found.stderr[-2000:]
