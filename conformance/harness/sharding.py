"""Fuzz campaigns split into shards: one per pytest-xdist worker, CI job or machine, merged at the end."""

from __future__ import annotations

import json
import random
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conformance.errors import UsageError

from .run import FUZZ_SHARD_PROPERTY, run_of


def is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def xdist_worker_count(config: pytest.Config) -> int:
    """Workers of this run, 1 without xdist. xdist also exports PYTEST_XDIST_WORKER_COUNT, but a pytest
    started as a subprocess of a worker inherits it without being a worker: workerinput is the reliable source."""
    return config.workerinput["workercount"] if is_xdist_worker(config) else 1


@dataclass(frozen=True)
class FuzzSharding:
    shards: tuple[int, ...]  # the shard indices this run parametrizes
    count: int
    seed: int


SHARDING_KEY = pytest.StashKey[FuzzSharding]()


def fuzz_sharding(config: pytest.Config) -> FuzzSharding:
    """The shards of each fuzz campaign; identical on every xdist worker, so they all collect the same items."""
    selected = config.getoption("--fuzz-shard")
    if selected:
        index, sep, count = selected.partition("/")
        try:
            index, count = int(index), int(count)
        except ValueError:
            index = count = -1
        if not sep or not 0 <= index < count:
            raise UsageError(f"--fuzz-shard {selected!r}: write I/K with 0 <= I < K, e.g. 0/4")
        shards = (index,)
    else:
        count = config.getoption("--fuzz-shards")
        if count is None:
            count = xdist_worker_count(config)
        if count < 1:
            raise UsageError(f"--fuzz-shards {count}: needs at least 1")
        shards = tuple(range(count))
    seed = config.getoption("--fuzz-seed")
    if seed is None:
        # every worker of one run shares the run's id, so the shards of one run draw from one seed
        seed = int(config.workerinput["testrunuid"][:16], 16) if is_xdist_worker(config) else random.getrandbits(63)
    return FuzzSharding(shards, count, seed)


def pytest_configure(config: pytest.Config) -> None:
    try:
        config.stash[SHARDING_KEY] = fuzz_sharding(config)
    except UsageError as exc:  # an xdist worker: the controller's pytest_cmdline_main has already said it
        raise pytest.UsageError(str(exc)) from None


def fuzz_report_path(config: pytest.Config) -> Path:
    path = Path(config.getoption("--fuzz-report"))
    return path if path.is_absolute() else Path(config.rootpath) / path


@dataclass
class FuzzShard:
    """One shard of a fuzz campaign: its share of the runs, its own random stream and findings directory."""

    index: int
    count: int
    seed: int
    report_dir: Path
    node: pytest.Item

    def findings_dir(self, campaign_dir: str | None = None) -> Path:
        base = self.report_dir / "findings"
        return (base / campaign_dir if campaign_dir else base) / f"shard-{self.index}"

    def run(self, target, total_runs: int, *, name: str, campaign_dir: str | None = None, timeout: float):
        """Run this shard's share of `total_runs`; its record goes to shard.json and to the campaign report."""
        from conformance.fuzz.campaign import campaign
        from conformance.fuzz.shards import shard_record, shard_runs, shard_stream

        runs = shard_runs(total_runs, self.index, self.count)
        if runs == 0:
            pytest.skip(reason=f"shard {self.index} of {self.count} has no runs: the campaign has only {total_runs}")
        findings = self.findings_dir(campaign_dir)
        started = time.time()
        from conformance.process.monitor import TargetCommand, TargetProcess, TargetStartError
        from conformance.fuzz.mutators import Seed
        from conformance.net.runner import Runner

        from .target import Target

        command = self.node.config.getoption("--target-cmd")
        monitor = TargetProcess(TargetCommand.parse(command)) if command else None
        try:
            if monitor is not None:  # this shard's own target, started, watched and restarted by the campaign
                target = Target(*monitor.start().address, timeout)
            runner = Runner(target.host, target.port, timeout, on_request=target.runner.on_request)
            seed = Seed(target.alive_request())  # an edition the host activates, with the audit's CMID
            result = campaign(runner, target.alive_request, runs=runs, findings_dir=findings, seed=seed,
                              stream=shard_stream(self.seed, self.index), monitor=monitor,
                              replay_target=f"--target-cmd {shlex.quote(command)}" if command else None)
        except TargetStartError as exc:
            pytest.fail(f"--target-cmd: {exc}", pytrace=False)
        finally:
            if monitor is not None:
                monitor.close()
        record = shard_record(result, campaign=name, index=self.index, count=self.count, seed=self.seed,
                              target=(target.host, target.port), findings_dir=findings, started=started,
                              ended=time.time())
        findings.mkdir(parents=True, exist_ok=True)
        (findings / "shard.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        self.node.user_properties.append((FUZZ_SHARD_PROPERTY, json.dumps(record)))
        return result


@pytest.fixture
def fuzz_shard(request: pytest.FixtureRequest) -> FuzzShard:
    """This item's shard of a fuzz campaign (parametrized: one item per shard, which xdist spreads)."""
    sharding = request.config.stash[SHARDING_KEY]
    return FuzzShard(request.param, sharding.count, sharding.seed, fuzz_report_path(request.config).parent,
                     request.node)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "fuzz_shard" in metafunc.fixturenames:
        sharding = metafunc.config.stash[SHARDING_KEY]
        metafunc.parametrize("fuzz_shard", sharding.shards, indirect=True,
                             ids=[f"shard{i}of{sharding.count}" for i in sharding.shards])


def write_fuzz_report(terminalreporter, config: pytest.Config) -> None:
    """Merge the fuzz shards of this run into --fuzz-report, with one summary line."""
    shards = run_of(config).fuzz_shards
    if not shards:
        return
    from conformance.fuzz.shards import merge, summary_line, write_report

    report = merge(shards)
    path = write_report(fuzz_report_path(config), report)
    terminalreporter.write_line(f"{summary_line(report)}; report {path}")
