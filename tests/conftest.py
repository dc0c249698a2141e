import os
import sys
from pathlib import Path

import pytest

from conformance.harness.sharding import is_xdist_worker, xdist_worker_count

sys.path.insert(0, str(Path(__file__).parent))  # tests import their helpers (faulty.py) directly

# --fuzz-runs, --fuzz-shards and friends are the kms-conformance plugin's (conformance/harness/plugin.py)


def pytest_addoption(parser):
    parser.addoption("--soak-shards", type=int, default=None, metavar="K",
                     help="load generators of the soak test (default: the number of xdist workers, else 1)")
    parser.addoption("--soak-cmids", type=int, default=10_000, help="distinct CMIDs of the soak test")
    parser.addoption("--soak-requests", type=int, default=100_000, help="activations of the soak test")


def pytest_configure(config):
    # The suites these tests start in subprocesses take their options from the test, not from this run's
    # PYTEST_ADDOPTS (read by now): a --durations there would print into every output the tests measure.
    os.environ.pop("PYTEST_ADDOPTS", None)


def pytest_collection_modifyitems(config, items):
    # the long campaign runs only when asked for: `-m fuzz` (make fuzz-long)
    selected = config.getoption("-m") or ""
    for marker, reason in (("fuzz", "long fuzz campaign: run with -m fuzz (make fuzz-long)"),
                           ("slow", "soak test: run with -m slow (make soak)")):
        if marker not in selected:
            for item in items:
                if marker in item.keywords:
                    item.add_marker(pytest.mark.skip(reason=reason))


def pytest_generate_tests(metafunc):
    # the soak's load generators: one shard per xdist worker, the same on every worker
    if "soak_shard" in metafunc.fixturenames:
        config = metafunc.config
        count = config.getoption("--soak-shards") or xdist_worker_count(config)
        metafunc.parametrize("soak_shard", [(i, count) for i in range(count)], ids=[f"shard{i}of{count}"
                                                                                     for i in range(count)])


SOAK_DIR = pytest.StashKey()


@pytest.fixture
def soak_dir(tmp_path_factory, pytestconfig):
    """Where the soak's shards meet: the run's base temp dir, which all xdist workers of this machine share."""
    base = tmp_path_factory.getbasetemp()
    if not is_xdist_worker(pytestconfig):
        pytestconfig.stash[SOAK_DIR] = base
        return base
    if not base.name.startswith("popen-"):
        pytest.skip(reason="the soak shares one host among the xdist workers of one machine: run it with -n N, "
                    "not with remote or chdir --tx specs")
    return base.parent


def _soak_dir_after_run(config):
    if is_xdist_worker(config):
        return None
    if config.pluginmanager.hasplugin("dsession"):  # the xdist controller: its base temp dir holds the workers'
        return config._tmp_path_factory.getbasetemp()
    return config.stash.get(SOAK_DIR, None)


def pytest_sessionfinish(session):
    """A soak host whose shards did not all finish (deselected, -x, a crash) is stopped here, not left running."""
    from conformance.loadgen import SharedHost

    directory = _soak_dir_after_run(session.config)
    if directory is not None and (directory / "soak-host.json").exists():
        SharedHost(directory, 0).stop_abandoned()


def pytest_terminal_summary(terminalreporter, config):
    import json

    directory = _soak_dir_after_run(config)
    if directory is None or not (directory / "soak-host.json").exists():
        return
    state = json.loads((directory / "soak-host.json").read_text())
    if state["status"] != "stopped":
        terminalreporter.write_line(f"soak: {state['status']}: {len(state.get('done', []))} of "
                                    f"{state.get('shards')} shards finished; the model was not checked")
        return
    base, final = state["baseline"], state["final"]
    terminalreporter.write_line(
        f"soak: {state['answered']} answered, {state['failed']} failed, by {state['shards']} load generator(s) in "
        f"{state['ended'] - state['started']:.1f} s against one host (pid {state['host']['pid']}); count/cache "
        f"{final['count']}/{final['cache_size']}; host fds {base['fds']} -> {final['fds']}, "
        f"RSS {base['rss_kib']} -> {final['rss_kib']} KiB")
