"""Every product-group cell of the guide's Table 2: Table 1 edition x host key group -> activate or refuse."""

import pytest

from conformance import catalog as catalog_mod
from conformance.wire.requests import build_request
from conformance.reference.host.config import HostConfig
from conformance.reference.host.service import KmsService
from conformance.wire import framing, hresult

CATALOG = catalog_mod.load()
# Table 2, written out from the guide: what each host key group activates (cumulative hierarchy)
ACTIVATES = {
    "client-vl": {"client-vl"},
    "server-a": {"client-vl", "server-a"},
    "server-b": {"client-vl", "server-a", "server-b"},
    "server-c": {"client-vl", "server-a", "server-b", "server-c"},
}
SERVICES = {group: KmsService(HostConfig(key_group=group)) for group in ACTIVATES}
CELLS = [(edition, group) for edition in CATALOG.table1() for group in ACTIVATES]


@pytest.mark.parametrize("edition,group", CELLS, ids=[f"{e.name}-{g}" for e, g in CELLS])
def test_table_2_cell(edition, group):
    service = SERVICES[group]
    outcome = service.handle(framing.seal_request(build_request(edition, workstation="t2.test")))
    should = CATALOG.tier_of(edition.kms_id) in ACTIVATES[group]
    if should:
        assert outcome.payload is not None, outcome.reason
    else:
        assert outcome.hresult == hresult.SL_E_VL_KEY_MANAGEMENT_SERVICE_ID_MISMATCH, outcome.reason
