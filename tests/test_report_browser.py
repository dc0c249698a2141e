"""The Allure report builds with the Allure 3 CLI and renders the suite's clauses in headless Chromium."""

import functools
import http.server
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLURE = ROOT / "node_modules" / ".bin" / "allure"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (make setup installs Debian's chromium)"),
    pytest.mark.skipif(not ALLURE.exists(), reason="Allure 3 CLI not installed (make setup runs npm install)"),
]


@pytest.fixture
def served(tmp_path):
    results, report = tmp_path / "results", tmp_path / "report"
    subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "conformance/suite"), "-q", "-p", "no:cacheprovider",
                    "--alluredir", str(results), "--summary", str(tmp_path / "summary.json")],
                   cwd=ROOT, check=True, capture_output=True, timeout=300)
    subprocess.run([str(ALLURE), "generate", str(results), "--config", str(ROOT / "allurerc.mjs"), "-o", str(report)],
                   cwd=ROOT, check=True, capture_output=True, timeout=300)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(report))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/index.html", json.loads((tmp_path / "summary.json").read_text())
    server.shutdown()


def test_report_lists_every_clause_of_the_run(served, tmp_path):
    url, summary = served
    dom = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}",
                          "--virtual-time-budget=10000", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120).stdout
    ran = {r["clause"] for r in summary if r["verdict"] in ("pass", "fail")}
    missing = sorted(cid for cid in ran if cid not in dom)
    assert ran and not missing, f"clauses not shown in the report page: {missing}"
