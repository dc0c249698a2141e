"""`kmsconf matrix`: the suite against several implementations, side by side (Autobahn|Testsuite's report as model).

Rows are clauses grouped by area, columns are implementations; each cell is coloured
by verdict and links to its evidence (decoded exchanges and pcap). index.json holds
the same data for tools. The page needs nothing but a browser.
"""

from __future__ import annotations

import html
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from conformance.harness import clauses as clause_registry

SUITE = Path(__file__).resolve().parents[1] / "suite"
# one colour per verdict of harness.verdicts.VERDICT_ORDER, and "none" for a clause a target did not run
COLOURS = {"fail": "#c62828", "xpass": "#6a1b9a", "warn": "#d84315", "inconclusive": "#f9a825",
           "xfail": "#ef6c00", "pass": "#2e7d32", "skip": "#9e9e9e", "none": "#e0e0e0"}


@dataclass
class MatrixTarget:
    name: str
    address: str  # empty for a host the suite starts itself (command)
    expect: str | None = None
    command: str | None = None  # --target-cmd


def run_target(target: MatrixTarget, out: Path, profile: str, extra: list[str] = ()) -> list[dict]:
    directory = out / target.name
    directory.mkdir(parents=True, exist_ok=True)
    summary = directory / "summary.json"
    where = ["--target-cmd", target.command] if target.command else ["--target", target.address]
    argv = [sys.executable, "-m", "pytest", str(SUITE), "-q", "-p", "no:cacheprovider", *where,
            "--profile", profile, "--summary", str(summary), "--evidence-dir", str(directory / "evidence"), *extra]
    if target.expect:
        argv += ["--expect", target.expect]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    (directory / "pytest.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if not summary.exists():
        raise RuntimeError(f"{target.name}: the suite wrote no summary (see {directory / 'pytest.log'})")
    return json.loads(summary.read_text())


def build(results: dict[str, list[dict]], targets: list[MatrixTarget], out: Path) -> dict:
    registry = clause_registry.load()
    cells: dict[str, dict[str, dict]] = {cid: {} for cid in registry}
    for name, records in results.items():
        for record in records:
            cells.setdefault(record["clause"], {})[name] = {
                "verdict": record["verdict"], "message": record["message"],
                "evidence": [f"{name}/evidence/{e}" for e in record.get("evidence", [])],
            }
    index = {
        "targets": [{"name": t.name, "address": t.address or t.command, "expect": t.expect} for t in targets],
        "clauses": [{"id": c.id, "title": c.title, "area": c.area, "ref": c.ref, "level": c.level}
                    for c in registry.values()],
        "cells": cells,
    }
    (out / "index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    (out / "index.html").write_text(render_html(index), encoding="utf-8")
    return index


def render_html(index: dict) -> str:
    names = [t["name"] for t in index["targets"]]
    esc = html.escape
    rows = []
    area = None
    for clause in index["clauses"]:
        if clause["area"] != area:
            area = clause["area"]
            rows.append(f'<tr class="area"><th colspan="{3 + len(names)}">{esc(area)}: '
                        f'{esc(clause_registry.AREAS[area])}</th></tr>')
        cells = []
        for name in names:
            cell = index["cells"].get(clause["id"], {}).get(name)
            verdict = cell["verdict"] if cell else "none"
            links = " ".join(f'<a href="{esc(e)}">{esc(Path(e).suffix[1:])}</a>' for e in (cell or {}).get("evidence", []))
            title = esc((cell or {}).get("message", "")[:600])
            cells.append(f'<td class="cell" style="background:{COLOURS[verdict]}" title="{title}">'
                         f'{esc(verdict.upper())}<br><small>{links}</small></td>')
        rows.append(f'<tr><td><code>{esc(clause["id"])}</code></td><td>{esc(clause["level"])}</td>'
                    f'<td>{esc(clause["title"])}<br><small>{esc(clause["ref"])}</small></td>{"".join(cells)}</tr>')
    legend = " ".join(f'<span class="cell" style="background:{c}">{v}</span>' for v, c in COLOURS.items())
    header = "".join(f"<th>{esc(t['name'])}<br><small>{esc(t['address'])}</small></th>" for t in index["targets"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>KMS conformance matrix</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; }}
tr.area th {{ background: #263238; color: white; text-align: left; }}
.cell {{ color: white; text-align: center; font-weight: bold; padding: 2px 6px; }}
.cell a {{ color: white; }}
</style></head><body>
<h1>KMS conformance matrix</h1>
<p>Each cell: the clause's verdict for that implementation; hover for the message, follow pcap/json for the
exchanges the check made. {legend}</p>
<table><thead><tr><th>clause</th><th>level</th><th>rule</th>{header}</tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table></body></html>
"""
