"""The Allure report of a run against a faulty host opens from a file in headless Chromium and says what matters:
the host under test, a failing clause with its decoded exchange, each verdict as its own status (the page's
counts are summary.json's), the verdict counts whole, and the page at its top."""

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conformance import catalog
from conformance.faults.host import faulty_host_thread
from conformance.harness.allure_labels import STATUS
from conformance.reference.client.activation import activate
from conformance.wire.requests import build_request
from conformance.reference.host.config import HostConfig

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


# a failed MUST (the HMAC), a warned SHOULD (the ePID), a declared deviation (any KMS id activated), and a count
# already at its cap (inconclusive), beside the passes and the skips of a host without a control channel
QUIRKS = frozenset({"bad-hmac", "random-epid", "ignore-key-group"})
DECLARED = """
[[deviation]]
clause = "KMS-GRP-003"
actual = "Response"
reason = "this host activates every KMS id (its ignore-key-group fault)"
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A run against the faulty host whose count is already at its cap (no control channel)."""
    base = tmp_path_factory.mktemp("report")
    (base / "declared.toml").write_text(DECLARED, encoding="utf-8")
    with faulty_host_thread(HostConfig(port=0), QUIRKS) as thread:
        host, port = thread.host.address
        edition = catalog.load().edition("Windows 10/11 Enterprise")
        for _ in range(60):
            assert activate(host, port, build_request(edition)).response is not None
        subprocess.run([sys.executable, "-m", "conformance.cli", "report", "--target", f"{host}:{port}",
                        "--expect", str(base / "declared.toml"), "--results", str(base / "results"),
                        "--out", str(base / "report")], cwd=ROOT, capture_output=True, timeout=300)
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


def test_the_page_counts_each_verdict_as_summary_json_does(report):
    page, _ = report
    records = json.loads((page.parents[1] / "summary.json").read_text())  # the suite's, beside the results
    checks = [check for record in records for check in record["checks"]]
    assert {c["verdict"] for c in checks} >= {"fail", "warn", "xfail", "inconclusive", "pass", "skip"}
    wanted = Counter(STATUS[c["verdict"]] for c in checks)
    home = rendered(page)["home"]
    shown = {name.lower(): int(n) for name, n in re.findall(r"^(Failed|Broken|Passed|Skipped|Unknown) (\d+)$",
                                                              home, re.M)}
    assert shown == dict(wanted), (shown, wanted)
    assert re.search(rf"^Total {len(checks)}$", home, re.M)
    assert "100%" not in home, "the success rate of a host with broken rules"


def test_no_warn_or_inconclusive_result_is_passed(report):
    results = [json.loads(p.read_text()) for p in (report[0].parents[1] / "results").glob("*-result.json")]
    by_verdict = {}
    for result in results:
        verdict = next(label["value"] for label in result["labels"] if label["name"] == "verdict")
        by_verdict.setdefault(verdict, set()).add(result["status"])
    assert by_verdict["warn"] == {"broken"} and by_verdict["inconclusive"] == {"unknown"}, by_verdict
    assert all(statuses == {STATUS[verdict]} for verdict, statuses in by_verdict.items()), by_verdict


def test_the_page_opens_at_its_top_with_the_verdicts_whole(report):
    text = rendered(report[0])
    assert text["scrolled"] == "0", "the page opened scrolled down to the first failed check"
    assert text["cut off"] == "", "cut short on the page: " + text["cut off"]
    for verdict in ("fail", "warn", "inconclusive", "xfail"):
        assert re.search(rf"^{verdict}\n\d+ clauses?$", text["home"], re.M), (verdict, text["home"][:1500])
