"""The Allure 3 command line, found where a user has it, and the one-file report generated with it.

Looked for in this order: the checkout's node_modules (the version package.json pins), a node_modules in the
working directory, `allure` on PATH (if it is Allure 3: Allure 2 has another command line), and what npx
already has (a project's node_modules up the tree, its cache): npx is run with --no, so nothing is downloaded.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from conformance.harness.allure_labels import allure_config

ALLURE_VERSION = "3.18.0"  # as package.json pins it
INSTALL = f"npm install -g allure@{ALLURE_VERSION}"


class AllureMissing(Exception):
    """No Allure 3 command line anywhere a user keeps one: the message says how to install it."""


def _version(command: list[str]) -> str:
    try:
        proc = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 and proc.stdout.strip() else ""


def find(checkout: Path, cwd: Path) -> list[str]:
    """The command that runs Allure 3 (AllureMissing when there is none)."""
    for local in (checkout / "node_modules" / ".bin" / "allure", cwd / "node_modules" / ".bin" / "allure"):
        if local.exists():
            return [str(local)]
    other = ""
    on_path = shutil.which("allure")
    if on_path:
        version = _version([on_path])
        if version.startswith("3."):
            return [on_path]
        other = f" (`allure` on PATH is Allure {version})" if version else " (`allure` on PATH is not Allure 3)"
    npx = shutil.which("npx")
    if npx:
        command = [npx, "--no", f"--package=allure@{ALLURE_VERSION}", "--", "allure"]
        if _version(command).startswith("3."):
            return command
    raise AllureMissing(f"the Allure 3 command line is not installed{other}: `{INSTALL}` (Node.js 20 or later), "
                        f"then run it again")


def generate(command: list[str], results: str, out: str) -> None:
    """The report of `results` as one HTML file in `out`, with the suite's configuration (allure_labels)."""
    with tempfile.TemporaryDirectory() as scratch:
        config = Path(scratch) / "allurerc.json"
        config.write_text(json.dumps(allure_config(out)), encoding="utf-8")
        subprocess.run([*command, "generate", results, "-o", out, "--config", str(config)], check=True,
                       capture_output=True)
