"""Make Allure's one-file report open every time, at its top, offline, and call nobody.

Allure 3's awesome page (3.18.0, pinned in package.json) has three faults in single-file mode:
- it loads Google Tag Manager, so opening a report about a production host contacts Google;
- its data table is created by a script after the app's, so when the parser yields between the two
  (the async analytics script makes that likely) the app fetches its data as files, which a browser
  refuses under file://, and the page stays empty: about 1 open in 30 in headless Chromium.
- it opens scrolled down to the first failed check (the tree's cursor starts on the first leaf of the groups it
  expands, the failed and broken ones, and scrolls it into view), past the totals and the metadata.
The page is ours to write (`kmsconf report --out`): drop the analytics, create the table first, and set the
app's own "scroll the pane to the top on the next cursor move" flag (its home button's) before it starts.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

_ANALYTICS = re.compile(r'\s*<script async src="https://www\.googletagmanager\.com/gtag/js[^"]*"></script>'
                        r"\s*<script>\s*window\.dataLayer.*?</script>", re.S)
_BEFORE_APP = "window.allure = window.allure || {};"
_DATA_FIRST = _BEFORE_APP + " window.allureReportData = window.allureReportData || {};"
_APP = re.compile(r'(<script\s+src="data:text/javascript;base64,)([A-Za-z0-9+/=]+)"')
# the effect that moves the tree's view to its cursor: `if(FLAG.value)return FLAG.value=!1,void(0,x.top)(e)`
_TO_TOP = re.compile(r"if\((\w+)\.value\)return \1\.value=!1,void\(0,\w+\.\w+\)\(e\)")


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
        html, opened = _open_at_top(html)  # the app is in the page too
        if not opened:
            missing.append("its tree's first scroll")
    page.write_text(html, encoding="utf-8")
    return missing


def _open_at_top(html: str) -> tuple[str, bool]:
    """The page with the tree's scroll-to-top flag set from the start: its first cursor move (on opening) keeps
    the pane at the top."""
    app = _APP.search(html)
    if app is None:
        return html, False
    code = base64.b64decode(app.group(2)).decode("utf-8")
    effects = {m.group(1) for m in _TO_TOP.finditer(code)}
    if len(effects) != 1:
        return html, False
    flag = re.compile(rf"((?<![\w$.]){re.escape(effects.pop())}=\(0,\w+\.\w+\)\()!1\)")
    code, n = flag.subn(r"\1!0)", code)
    if n != 1:
        return html, False
    encoded = base64.b64encode(code.encode("utf-8")).decode("ascii")
    return html[: app.start(2)] + encoded + html[app.end(2):], True
