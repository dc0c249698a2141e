"""The pytest plugin of kms-conformance, registered through the `pytest11` entry point.

`pytest --target HOST:PORT` runs the conformance suite, alone, wherever it is run from (the
checkout or an empty directory after `pip install kms-conformance`); without --target the
session starts the reference host in-process on a free loopback port. The plugin is split
by concern: options (validated once, up front), selection (clauses, markers, footprint),
fixtures (the target), verdicts (summary and exit status) and sharding (fuzz campaigns).
"""

from __future__ import annotations

pytest_plugins = [
    "conformance.harness.options",
    "conformance.harness.selection",
    "conformance.harness.sharding",
    "conformance.harness.fixtures",
    "conformance.harness.host_life",
    "conformance.harness.client_fixtures",
    "conformance.harness.verdicts",
    "conformance.harness.recording",
]
