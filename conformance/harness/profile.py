"""What the host serves, learned from its answers before the checks need it: never from its build or name.

A few cheap probes, all with the audit's one CMID: for each protocol version, editions of that
generation until one is activated (a refusal with 0xC004F042 means "not this key's edition",
anything else means the version itself is not served). The checks then ask with an edition
the host activates for that version, and skip, saying why, where it serves none.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Callable

from conformance import catalog as catalog_mod
from conformance.net.outcomes import Activation, Refusal, Response
from conformance.wire import epid as epid_mod
from conformance.wire import hresult

SAMPLE_SKUS = {  # tried first: the editions of the third-party captures
    4: uuid.UUID("ae2ee509-1b34-41c0-acb7-6d4650168915"),  # Windows 7 Enterprise
    5: uuid.UUID("458e1bec-837a-45f6-b9d5-925ed5d299de"),  # Windows 8 Enterprise
    6: uuid.UUID("34e1ae55-27f8-4950-8877-7a03be5fb181"),  # Windows Server 2019 Datacenter
}


class NotServed(Exception):
    """The host serves nothing a check needs (a protocol version, an N policy): the check skips with this reason."""


def candidates(catalog: catalog_mod.Catalog, protocol: int) -> list[catalog_mod.Edition]:
    """One edition per KMS id of this generation: the capture's edition first, then the most widely activated."""
    by_kms: dict[uuid.UUID, catalog_mod.Edition] = {}
    for edition in catalog.editions:
        if edition.protocol == protocol:
            by_kms.setdefault(edition.kms_id, edition)
    sample = catalog.edition_by_sku(SAMPLE_SKUS[protocol])
    if sample is not None and sample.protocol == protocol:
        by_kms[sample.kms_id] = sample
    spread = lambda e: (e.sku_id != SAMPLE_SKUS[protocol], -len(catalog.keys_activating(e.kms_id)), e.name)
    return sorted(by_kms.values(), key=spread)


@dataclass
class HostProfile:
    catalog: catalog_mod.Catalog
    served: dict[int, catalog_mod.Edition] = field(default_factory=dict)  # protocol -> an activated edition
    unserved: dict[int, str] = field(default_factory=dict)  # protocol -> refused as a version (0x8007000D)
    broken: dict[int, str] = field(default_factory=dict)  # protocol -> answered otherwise (a close, a fault...)
    epids: dict[int, str] = field(default_factory=dict)  # protocol -> the ePID of that activation
    attempt: Callable[[catalog_mod.Edition, int], Activation] | None = None
    _found: dict[str, catalog_mod.Edition | None] = field(default_factory=dict)

    @classmethod
    def learn(cls, catalog: catalog_mod.Catalog, protocols: tuple[int, ...],
              attempt: Callable[[catalog_mod.Edition, int], Activation]) -> "HostProfile":
        profile = cls(catalog, attempt=attempt)
        for protocol in sorted(protocols, reverse=True):
            refused = []
            for edition in candidates(catalog, protocol):
                result = attempt(edition, protocol)
                outcome = result.outcome
                if isinstance(outcome, Response):  # it tried to activate: whether the answer is right is the checks'
                    profile.served[protocol] = edition
                    if result.response is not None:
                        profile.epids[protocol] = result.response.response.epid
                    break
                if isinstance(outcome, Refusal) and outcome.hresult == hresult.SL_E_VL_KEY_MANAGEMENT_SERVICE_ID_MISMATCH:
                    refused.append(edition.name)
                    continue
                why = f"a V{protocol} request of {edition.name} got {result.describe()}"
                if isinstance(outcome, Refusal) and outcome.hresult == hresult.E_INVALID_DATA:
                    profile.unserved[protocol] = why  # the answer of a host that does not serve the version (H5)
                else:
                    profile.broken[protocol] = why  # no host answers a version so: KMS-MSG-001 fails with it
                break
            else:
                profile.unserved[protocol] = (f"the host's key activates no V{protocol} edition of the catalog "
                                              f"(refused {len(refused)} with 0xC004F042: {', '.join(refused[:4])}"
                                              f"{', ...' if len(refused) > 4 else ''})")
        return profile

    def key_description(self) -> str:
        """The host key its ePID names, for skip reasons ("Windows Server 2008 R2 C")."""
        for text in self.epids.values():
            keys = epid_mod.keys_named(text, self.catalog)
            if keys:
                return " / ".join(k.name for k in keys)
        return "unknown"

    def edition_for(self, protocol: int) -> catalog_mod.Edition:
        if protocol in self.served:
            return self.served[protocol]
        if protocol in self.broken:
            raise NotServed(f"no V{protocol} request was activated: {self.broken[protocol]} (KMS-MSG-001 judges it)")
        why = self.unserved.get(protocol, f"V{protocol} was not probed")
        raise NotServed(f"the host answers no V{protocol} request with an activation: {why}")

    @property
    def newest(self) -> int:
        if not self.served:
            raise NotServed("the host activated no edition of the catalog in any protocol version: "
                            + "; ".join({**self.unserved, **self.broken}.values()))
        return max(self.served)

    def edition_where(self, what: str, wanted: Callable[[catalog_mod.Edition], bool]) -> catalog_mod.Edition:
        """An edition the host activates with an answer that opens (in its own generation's protocol) and that
        satisfies `wanted`, probing candidates of the served versions once; NotServed says what the host refused."""
        if what not in self._found:
            # editions whose answers opened: a count must be readable
            self._found[what] = next((e for p, e in self.served.items() if p in self.epids and wanted(e)), None)
            for protocol in sorted(self.served, reverse=True):
                if self._found[what] is not None:
                    break
                for edition in candidates(self.catalog, protocol):
                    if not wanted(edition):
                        continue
                    if self.attempt(edition, protocol).response is not None:
                        self._found[what] = edition
                        break
        found = self._found[what]
        if found is None:
            raise NotServed(f"the host activates no {what} (its ePID names {self.key_description()}; "
                            f"versions served: {', '.join(f'V{p}' for p in sorted(self.served)) or 'none'})")
        return found
