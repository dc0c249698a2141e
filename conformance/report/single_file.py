"""Make Allure's one-file report open every time, offline, and call nobody.

Allure 3's awesome page (3.18.0, pinned in package.json) has two faults in single-file mode:
- it loads Google Tag Manager, so opening a report about a production host contacts Google;
- its data table is created by a script after the app's, so when the parser yields between the two
  (the async analytics script makes that likely) the app fetches its data as files, which a browser
  refuses under file://, and the page stays empty: about 1 open in 30 in headless Chromium.
The page is ours to write (`kmsconf report --out`): drop the analytics and create the table first.
"""

from __future__ import annotations

import re
from pathlib import Path

_ANALYTICS = re.compile(r'\s*<script async src="https://www\.googletagmanager\.com/gtag/js[^"]*"></script>'
                        r"\s*<script>\s*window\.dataLayer.*?</script>", re.S)
_BEFORE_APP = "window.allure = window.allure || {};"
_DATA_FIRST = _BEFORE_APP + " window.allureReportData = window.allureReportData || {};"


def harden(page: Path) -> list[str]:
    """Rewrite the page in place; return what could not be fixed (an Allure whose page is laid out otherwise)."""
    html = page.read_text(encoding="utf-8")
    missing = []
    html, dropped = _ANALYTICS.subn("", html, count=1)
    if not dropped and "googletagmanager" in html:
        missing.append("its analytics scripts")
    if "window.allureReportData" in html:  # a single-file page: its data table must exist before the app runs
        if html.count(_BEFORE_APP) == 1:
            html = html.replace(_BEFORE_APP, _DATA_FIRST)
        else:
            missing.append("its data and app scripts")
    page.write_text(html, encoding="utf-8")
    return missing
