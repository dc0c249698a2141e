"""A correctly configured reference host passes the whole default suite whatever its host key, build or protocol
versions: the suite learns what the host serves instead of assuming Windows Server 2019 and Windows 10."""

import pytest

from conformance import catalog
from faulty import run_suite

KEYS = [k.slug for k in catalog.load().host_keys]
BUILDS = [b.build for b in catalog.load().host_builds]


def assert_no_failure(records: dict[str, dict]) -> None:
    bad = {cid: (r["verdict"], r["message"][:300]) for cid, r in records.items() if r["verdict"] in ("fail", "warn")}
    assert not bad, bad


@pytest.mark.parametrize("key", KEYS)
def test_every_host_key(tmp_path, key):
    assert_no_failure(run_suite(tmp_path, key_group=key))


@pytest.mark.parametrize("build", BUILDS)
def test_every_host_build(tmp_path, build):
    assert_no_failure(run_suite(tmp_path, host_build=build))


def test_the_guides_own_host_answers_v4_only(tmp_path):
    """Windows Server 2008 R2 with a Server Group B key, before the updates that taught it V5 and V6."""
    records = run_suite(tmp_path, key_group="server-b", host_build=7601, protocols=(4,))
    assert_no_failure(records)
    assert records["KMS-MSG-009"]["verdict"] == "skip" and "V6" in records["KMS-MSG-009"]["message"]
    assert records["KMS-GRP-001"]["verdict"] == "pass"
