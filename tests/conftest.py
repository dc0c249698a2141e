import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # tests import their helpers (faulty.py) directly


def pytest_addoption(parser):
    parser.addoption("--fuzz-runs", default="2000", help="runs of the long fuzz campaign (-m fuzz)")


def pytest_collection_modifyitems(config, items):
    # the long campaign runs only when asked for: `-m fuzz` (make fuzz-long)
    import pytest

    selected = config.getoption("-m") or ""
    for marker, reason in (("fuzz", "long fuzz campaign: run with -m fuzz (make fuzz-long)"),
                           ("slow", "soak test: run with -m slow (make soak)")):
        if marker not in selected:
            for item in items:
                if marker in item.keywords:
                    item.add_marker(pytest.mark.skip(reason=reason))
