"""The Allure report of a run against a faulty host opens from a file in headless Chromium and says what matters:
the host under test, a failing clause with its decoded exchange, an inconclusive verdict as such."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conformance import catalog
from conformance.reference.client import activate, build_request
from conformance.reference.config import HostConfig
from conformance.reference.host import HostThread

ROOT = Path(__file__).resolve().parents[1]
ALLURE = ROOT / "node_modules" / ".bin" / "allure"
PLAYWRIGHT = ROOT / "node_modules" / "playwright-core"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (make setup installs Debian's chromium)"),
    pytest.mark.skipif(not ALLURE.exists() or not PLAYWRIGHT.exists(),
                       reason="Allure 3 CLI or playwright-core not installed (make setup runs npm install)"),
]


def rendered(report: Path, *clicks: str) -> dict[str, str]:
    """The page's text as a reader sees it, at home and after each click."""
    proc = subprocess.run(["node", str(Path(__file__).with_name("report_page.mjs")), str(report), *clicks],
                          cwd=ROOT, capture_output=True, text=True, timeout=180, env={"CHROMIUM": CHROMIUM,
                                                                                      "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {step["step"]: step["text"] for step in map(json.loads, proc.stdout.splitlines())}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A run against a host with a broken V6 HMAC whose count is already at its cap (no control channel)."""
    base = tmp_path_factory.mktemp("report")
    with HostThread(HostConfig(port=0, quirks=frozenset({"bad-hmac"}))) as thread:
        host, port = thread.host.address
        edition = catalog.load().edition("Windows 10/11 Enterprise")
        for _ in range(60):
            assert activate(host, port, build_request(edition)).response is not None
        subprocess.run([sys.executable, "-m", "conformance.cli", "report", "--target", f"{host}:{port}",
                        "--results", str(base / "results"), "--out", str(base / "report")],
                       cwd=ROOT, capture_output=True, timeout=300)
    return base / "report" / "index.html", f"{host}:{port}"


def test_report_names_the_target_and_shows_the_failure_decoded(report):
    page, target = report
    assert page.is_file() and len(list(page.parent.iterdir())) <= 3, "one file to open, no server needed"
    text = rendered(page, "test_response_integrity[v6]", "decoded fields")
    assert target in text["home"], text["home"][:1500]
    failure = text["test_response_integrity[v6]"]
    assert "KMS-MSG-002" in failure and "actual: failed: hmac" in failure
    assert '"hmac": false' in text["decoded fields"]
    assert text["outside requests"] == "", "the report called out: " + text["outside requests"]


def test_report_data_exists_before_the_app_that_reads_it(report):
    """Allure's own page creates its data table after the app, which then, now and again, fetches its data as files
    (refused under file://) and stays empty: kmsconf report puts the table first."""
    html = report[0].read_text(encoding="utf-8")
    app = html.index('<script   src="data:text/javascript;base64,')
    assert -1 < html.find("window.allureReportData = window.allureReportData || {};") < app
    assert "googletagmanager" not in html


def test_report_shows_an_inconclusive_verdict_as_such(report):
    page, _ = report
    text = rendered(page, "KMS-THR-001", "test_new_cmid_adds_one")["test_new_cmid_adds_one"]
    assert "INCONCLUSIVE" in text and "cap" in text, text[:2000]
