"""The one-file report page is rewritten only where Allure 3.18 lays it out as expected; anything else is said."""

import base64

from conformance.report.single_file import harden

# the app's tree: a flag, false at first, that makes its next cursor move scroll the pane to the top
APP = "const fr=(0,C.vP)(!1);const Y=e=>{if(fr.value)return fr.value=!1,void(0,d.cW)(e);(0,d.zY)(e)};"
ALLURE_318 = f"""<body><div id="app"></div>
    <script>
      window.allure = window.allure || {{}};
    </script>
    <script   src="data:text/javascript;base64,{base64.b64encode(APP.encode()).decode()}"></script>
    <script async src="https://www.googletagmanager.com/gtag/js?id=G-X"></script>
    <script>
        window.dataLayer = window.dataLayer || [];
        gtag('js', new Date());
    </script>
    <script async>
      window.allureReportDataReady = false;
      window.allureReportData = window.allureReportData || {{}};
    </script></body>"""


def test_the_data_table_comes_first_and_the_analytics_go(tmp_path):
    page = tmp_path / "index.html"
    page.write_text(ALLURE_318)
    assert harden(page) == []
    html = page.read_text()
    assert "googletagmanager" not in html and "dataLayer" not in html
    assert html.index("window.allureReportData = window.allureReportData || {};") < html.index("data:text/javascript")
    assert "window.allureReportDataReady = false;" in html
    app = base64.b64decode(html.split("base64,")[1].split('"')[0]).decode()
    assert app == APP.replace("fr=(0,C.vP)(!1)", "fr=(0,C.vP)(!0)"), "the pane starts at the top"


def test_another_layout_is_left_and_named(tmp_path):
    page = tmp_path / "index.html"
    other = ('<script src="https://www.googletagmanager.com/gtag/js"></script>'
             "<script>window.allureReportData = {}</script>")
    page.write_text(other)
    assert harden(page) == ["its analytics scripts", "its data and app scripts", "its tree's first scroll"]
    assert page.read_text() == other


def test_a_page_of_several_files_is_left_alone(tmp_path):
    page = tmp_path / "index.html"
    page.write_text("<body><script>window.allure = window.allure || {};</script></body>")
    assert harden(page) == []
    assert "allureReportData" not in page.read_text()
