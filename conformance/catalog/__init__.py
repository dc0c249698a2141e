"""The product catalog: editions, KMS counted ids, host keys (CSVLKs), host builds, LCIDs.

Data lives in `products.toml` (this project's schema); this module loads it once,
checks its cross-references, and answers lookups. Adding a product generation means
adding rows there, never code here.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path

PRODUCTS_FILE = Path(__file__).with_name("products.toml")
WINDOWS_APP_ID = uuid.UUID("55c92734-d682-4d71-983e-d6ec3f16059f")
TIERS = ("client-vl", "server-a", "server-b", "server-c")  # Table 2's hierarchy, lowest first


@dataclass(frozen=True)
class Application:
    id: uuid.UUID
    name: str


@dataclass(frozen=True)
class KmsId:
    id: uuid.UUID
    name: str
    application: uuid.UUID
    n_policy: int
    protocol: int
    tier: str | None


@dataclass(frozen=True)
class Edition:
    name: str
    sku_id: uuid.UUID
    kms_id: uuid.UUID
    app_id: uuid.UUID
    n_policy: int
    protocol: int
    gvlk: str | None
    tables: tuple[str, ...]


@dataclass(frozen=True)
class HostKey:
    slug: str
    name: str
    id: uuid.UUID
    tier: str | None
    epid_group: int
    key_id_min: int
    key_id_max: int
    release: dt.date | None
    activates: frozenset[uuid.UUID]
    host_os: tuple[str, ...]
    tables: tuple[str, ...]
    default: bool


@dataclass(frozen=True)
class HostBuild:
    build: int
    platform_id: int
    os: str
    release: dt.date


def _date(text: str | None) -> dt.date | None:
    return dt.date.fromisoformat(text) if text else None


class Catalog:
    def __init__(self, data: dict, source: str = "catalog"):
        self.applications = {uuid.UUID(a["id"]): Application(uuid.UUID(a["id"]), a["name"]) for a in data["application"]}
        self.kms_ids: dict[uuid.UUID, KmsId] = {}
        for row in data["kms_id"]:
            app = uuid.UUID(row["application"])
            if app not in self.applications:
                raise ValueError(f"{source}: kms_id {row['name']!r} names unknown application {app}")
            kid = uuid.UUID(row["id"])
            self.kms_ids[kid] = KmsId(kid, row["name"], app, row["n_policy"], row["protocol"], row.get("tier"))
        editions = []
        for row in data["edition"]:
            kms = self.kms_ids.get(uuid.UUID(row["kms_id"]))
            if kms is None:
                raise ValueError(f"{source}: edition {row['name']!r} names unknown kms_id {row['kms_id']}")
            editions.append(Edition(row["name"], uuid.UUID(row["sku_id"]), kms.id, kms.application,
                                    row.get("n_policy", kms.n_policy), row.get("protocol", kms.protocol),
                                    row.get("gvlk"), tuple(row.get("tables", ()))))
        self.editions = tuple(editions)
        self._by_sku = {e.sku_id: e for e in editions}
        if len(self._by_sku) != len(editions):
            raise ValueError(f"{source}: an SKU id appears twice")
        keys = []
        for row in data["host_key"]:
            activates = frozenset(uuid.UUID(a) for a in row["activates"])
            unknown = activates - set(self.kms_ids)
            if unknown:
                raise ValueError(f"{source}: host key {row['slug']} activates unknown ids {sorted(map(str, unknown))}")
            keys.append(HostKey(row["slug"], row["name"], uuid.UUID(row["id"]), row.get("tier"), row["epid_group"],
                                row["key_id_min"], row["key_id_max"], _date(row.get("release")), activates,
                                tuple(row.get("host_os", ())), tuple(row.get("tables", ())), row.get("default", False)))
        self.host_keys = tuple(keys)
        self.host_builds = tuple(HostBuild(b["build"], b["platform_id"], b["os"], _date(b["release"]))
                                 for b in data["host_build"])
        self.lcids = frozenset(data["lcids"]["valid"])

    def edition_by_sku(self, sku: uuid.UUID) -> Edition | None:
        return self._by_sku.get(sku)

    def edition(self, key: str | uuid.UUID) -> Edition:
        """By SKU GUID or by name (case-insensitive); LookupError names close matches."""
        if isinstance(key, uuid.UUID):
            found = self._by_sku.get(key)
        else:
            try:
                found = self._by_sku.get(uuid.UUID(key.strip("{}")))
            except ValueError:
                wanted = key.casefold().strip()
                found = next((e for e in self.editions if e.name.casefold() == wanted), None)
        if found is None:
            close = difflib.get_close_matches(str(key), [e.name for e in self.editions], n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise LookupError(f"no edition {str(key)!r} in the catalog{hint}")
        return found

    def kms_id(self, kms_id: uuid.UUID) -> KmsId | None:
        return self.kms_ids.get(kms_id)

    def host_key(self, slug_or_tier: str) -> HostKey:
        """A host key by slug, or by tier alias (client-vl ... server-c: the Windows 7 / 2008 R2 keys of Table 2)."""
        for key in self.host_keys:
            if key.slug == slug_or_tier or (key.tier == slug_or_tier and "table2" in key.tables):
                return key
        raise LookupError(f"no host key {slug_or_tier!r}; use one of {', '.join(TIERS)} or a catalog slug "
                          f"({', '.join(k.slug for k in self.host_keys[:6])}, ...)")

    def default_host_keys(self) -> tuple[HostKey, ...]:
        return tuple(k for k in self.host_keys if k.default)

    def keys_activating(self, kms_id: uuid.UUID) -> tuple[HostKey, ...]:
        return tuple(k for k in self.host_keys if kms_id in k.activates)

    def table1(self) -> tuple[Edition, ...]:
        return tuple(e for e in self.editions if "table1" in e.tables)

    def table2(self) -> tuple[HostKey, ...]:
        return tuple(sorted((k for k in self.host_keys if "table2" in k.tables), key=lambda k: TIERS.index(k.tier)))

    def table6(self) -> tuple[Edition, ...]:
        return tuple(e for e in self.editions if "table6" in e.tables)

    def host_build(self, build: int) -> HostBuild | None:
        return next((b for b in self.host_builds if b.build == build), None)

    def platform_ids(self) -> dict[int, int]:
        return {b.build: b.platform_id for b in self.host_builds}

    def tier_of(self, kms_id: uuid.UUID) -> str | None:
        kms = self.kms_ids.get(kms_id)
        return kms.tier if kms else None


def load(path: Path | None = None) -> Catalog:
    return _load(path or PRODUCTS_FILE)


@functools.cache
def _load(path: Path) -> Catalog:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return Catalog(data, str(path))
