"""The product catalog: editions, KMS counted ids, host keys (CSVLKs), host builds, LCIDs.

Data lives in `products.toml` (this project's schema); this module loads it once,
checks its cross-references, and answers lookups. Adding a product generation means
adding rows there, never code here.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import re
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path

PRODUCTS_FILE = Path(__file__).with_name("products.toml")
WINDOWS_APP_ID = uuid.UUID("55c92734-d682-4d71-983e-d6ec3f16059f")
GVLK_PATTERN = re.compile(r"^[0-9A-Z]{5}(-[0-9A-Z]{5}){4}$")
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
    table1_column: str | None = None  # Table 1's generation: "Windows 7 / Server 2008 R2" or "Windows Vista / ..."


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


def _slug(name: str) -> str:
    """Loose form for lookups: "Windows 7 Enterprise" and "win7-enterprise" both give "win7enterprise"."""
    return "".join(ch for ch in name.casefold().replace("windows", "win") if ch.isalnum())


def _rows(data: dict, table: str, source: str) -> list[dict]:
    rows = data.get(table)
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{source}: no [[{table}]] rows")
    return rows


class Catalog:
    def __init__(self, data: dict, source: str = "catalog"):
        # Every check names the offending row, so a bad edit of products.toml is found at once.
        self._row = "header"  # the row being read, for messages about a missing field or a bad GUID
        try:
            self._build(data, source)
        except ValueError as exc:
            if str(exc).startswith(source):
                raise
            raise ValueError(f"{source}: {exc} in {self._row}") from None
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{source}: missing or malformed field {exc} in {self._row}") from None
        del self._row

    def _build(self, data: dict, source: str) -> None:
        self.applications: dict[uuid.UUID, Application] = {}
        for row in _rows(data, "application", source):
            self._row = f"application {row.get('name')!r}"
            self.applications[uuid.UUID(row["id"])] = Application(uuid.UUID(row["id"]), row["name"])
        self.kms_ids: dict[uuid.UUID, KmsId] = {}
        for row in _rows(data, "kms_id", source):
            self._row = f"kms_id {row.get('name')!r}"
            app, kid, tier = uuid.UUID(row["application"]), uuid.UUID(row["id"]), row.get("tier")
            if app not in self.applications:
                raise ValueError(f"{source}: kms_id {row['name']!r} names unknown application {app}")
            if kid in self.kms_ids:
                raise ValueError(f"{source}: kms_id {row['name']!r} repeats id {kid}")
            if tier is not None and tier not in TIERS:
                raise ValueError(f"{source}: kms_id {row['name']!r} has tier {tier!r}, not one of {TIERS}")
            self.kms_ids[kid] = KmsId(kid, row["name"], app, row["n_policy"], row["protocol"], tier,
                                      row.get("table1_column"))
        editions = []
        self._by_name: dict[str, Edition] = {}  # casefolded name or alias -> edition
        self._by_gvlk: dict[str, Edition] = {}
        for row in _rows(data, "edition", source):
            self._row = f"edition {row.get('name')!r}"
            kms = self.kms_ids.get(uuid.UUID(row["kms_id"]))
            if kms is None:
                raise ValueError(f"{source}: edition {row['name']!r} names unknown kms_id {row['kms_id']}")
            if "kms_id_alt" in row and uuid.UUID(row["kms_id_alt"]) not in self.kms_ids:
                raise ValueError(f"{source}: edition {row['name']!r} names unknown kms_id_alt {row['kms_id_alt']}")
            edition = Edition(row["name"], uuid.UUID(row["sku_id"]), kms.id, kms.application,
                              row.get("n_policy", kms.n_policy), row.get("protocol", kms.protocol),
                              row.get("gvlk"), tuple(row.get("tables", ())))
            for name in (row["name"], *row.get("aliases", ())):
                if self._by_name.setdefault(name.casefold(), edition) is not edition:
                    raise ValueError(f"{source}: edition {row['name']!r}: name or alias {name!r} is already taken")
            for gvlk in filter(None, (row.get("gvlk"), row.get("gvlk_alt"))):  # gvlk_alt: a source's other value
                if self._by_gvlk.setdefault(gvlk, edition) is not edition:
                    raise ValueError(f"{source}: edition {row['name']!r}: GVLK {gvlk} is already another edition's")
            editions.append(edition)
        self.editions = tuple(editions)
        self._by_sku = {e.sku_id: e for e in editions}
        if len(self._by_sku) != len(editions):
            seen: set[uuid.UUID] = set()
            dup = next(e for e in editions if e.sku_id in seen or seen.add(e.sku_id))
            raise ValueError(f"{source}: edition {dup.name!r} repeats SKU id {dup.sku_id}")
        # Loose slugs only where unambiguous; a clash simply leaves that slug out.
        slugs: dict[str, list[Edition]] = {}
        for name, edition in self._by_name.items():
            bucket = slugs.setdefault(_slug(name), [])
            if edition not in bucket:
                bucket.append(edition)
        self._by_slug = {s: found[0] for s, found in slugs.items() if len(found) == 1}
        keys = []
        for row in _rows(data, "host_key", source):
            self._row = f"host_key {row.get('slug')!r}"
            activates = frozenset(uuid.UUID(a) for a in row["activates"])
            unknown = activates - set(self.kms_ids)
            if unknown:
                raise ValueError(f"{source}: host key {row['slug']} activates unknown ids {sorted(map(str, unknown))}")
            if row.get("tier") is not None and row["tier"] not in TIERS:
                raise ValueError(f"{source}: host key {row['slug']} has tier {row['tier']!r}, not one of {TIERS}")
            if any(k.slug == row["slug"] for k in keys):
                raise ValueError(f"{source}: host key slug {row['slug']!r} appears twice")
            keys.append(HostKey(row["slug"], row["name"], uuid.UUID(row["id"]), row.get("tier"), row["epid_group"],
                                row["key_id_min"], row["key_id_max"], _date(row.get("release")), activates,
                                tuple(row.get("host_os", ())), tuple(row.get("tables", ())), row.get("default", False)))
            if keys[-1].key_id_min > keys[-1].key_id_max:
                raise ValueError(f"{source}: host key {row['slug']} has key_id_min > key_id_max")
        self.host_keys = tuple(keys)
        self._row = "host_build"
        self.host_builds = tuple(HostBuild(b["build"], b["platform_id"], b["os"], _date(b["release"]))
                                 for b in _rows(data, "host_build", source))
        if len({b.build for b in self.host_builds}) != len(self.host_builds):
            raise ValueError(f"{source}: a host build appears twice")
        self._row = "lcids"
        self.lcids = frozenset(data["lcids"]["valid"])

    def edition_by_sku(self, sku: uuid.UUID) -> Edition | None:
        return self._by_sku.get(sku)

    def edition(self, key: str | uuid.UUID) -> Edition:
        """By SKU GUID, by name or alias (case-insensitive), or by a unique loose slug ("win7-enterprise").

        LookupError lists close matches, so a typo on the command line explains itself."""
        found: Edition | None
        if isinstance(key, uuid.UUID):
            found = self._by_sku.get(key)
        else:
            try:
                found = self._by_sku.get(uuid.UUID(key.strip().strip("{}")))
            except ValueError:
                wanted = key.strip().casefold()
                found = self._by_name.get(wanted) or self._by_slug.get(_slug(wanted))
        if found is None:
            names = {e.name.casefold(): e.name for e in self.editions}
            names.update((alias, e.name) for alias, e in self._by_name.items())
            wanted = str(key).strip().casefold()
            # names that begin with what was typed ("Windows 7" -> its editions) before names merely alike
            starts = sorted((n for n in names if n.startswith(wanted + " ")), key=len)
            close = starts + difflib.get_close_matches(wanted, list(names), n=6, cutoff=0.5)
            hint = list(dict.fromkeys(names[c] for c in close))[:3]
            suggestion = f"; did you mean {', '.join(repr(h) for h in hint)}?" if hint else ""
            raise LookupError(f"no edition {str(key)!r} in the catalog{suggestion}")
        return found

    def edition_by_gvlk(self, key: str) -> Edition:
        """The edition a client setup key (GVLK, Table 6) installs; ValueError for a malformed key."""
        normal = key.strip().upper()
        if not GVLK_PATTERN.match(normal):
            raise ValueError(f"{key!r} is not a product key (five groups of five characters: XXXXX-XXXXX-...)")
        found = self._by_gvlk.get(normal)
        if found is None:
            raise LookupError(f"{normal} is not a KMS client setup key (GVLK) of any edition in the catalog")
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
