"""The product catalog: data integrity against PROTOCOL.md (sections 3.4, 7, 8, 10, 11), lookups, loader checks,
and the editions real clients sent in the third-party captures."""

from __future__ import annotations

import re
import tomllib
import uuid
from pathlib import Path

import pytest

from conformance import catalog
from conformance.catalog import TIERS

SHARED = Path(__file__).resolve().parents[2] / "shared"
CAPTURES = SHARED / "captures" / "third-party"
U = uuid.UUID

WINDOWS, OFFICE_2010, OFFICE_2013 = (U("55c92734-d682-4d71-983e-d6ec3f16059f"), U("59a52881-a989-479d-af46-f275c6370663"),
                                     U("0ff1ce15-a989-479d-af46-f275c6370663"))
VISTA, WIN7 = U("212a64dc-43b1-4d3d-a30c-2fc69d2095c6"), U("7fde5219-fbfa-484a-82c9-34d1ad53e856")
WS08_A, WS08_B, WS08_C = (U("33e156e4-b76f-4a52-9f91-f641dd95ac48"), U("8fe53387-3087-4447-8985-f75132215ac9"),
                          U("8a21fdf3-cbc5-44eb-83f3-fe284e6680a7"))
R2_A, R2_B, R2_C = (U("0fc6ccaf-ff0e-4fae-9d08-4370785bf7ed"), U("ca87f5b6-cd46-40c0-b06d-8ecd57a4373f"),
                    U("b2ca2689-a9a8-42d7-938d-cf8e9f201958"))
WIN8, WS2012, OFFICE13_KMS = (U("3c40b358-5948-45af-923b-53d21fcc7e79"), U("8665cb71-468c-4aa3-a337-cb9bc9d5eaac"),
                              U("e6a6f1bf-9d40-40c3-aa9f-c77ba21578c0"))
OFFICE10_KMS = U("e85af946-2e25-47b7-83e1-bebcebeac611")

# PROTOCOL.md 11.4, last column: what each Table 2 key activates (cumulative over both generations).
TABLE2_SETS = {
    "client-vl": {WIN7, VISTA},
    "server-a": {WIN7, VISTA, R2_A, WS08_A},
    "server-b": {WIN7, VISTA, R2_A, WS08_A, R2_B, WS08_B},
    "server-c": {WIN7, VISTA, R2_A, WS08_A, R2_B, WS08_B, R2_C, WS08_C},
}

# PROTOCOL.md 11.3: edition SKU id -> (KMS counted id, GVLK); the HPC GVLK is the recorded conflict.
TABLE_11_3 = {
    "b92e9980-b9d5-4821-9c94-140f632f6312": (WIN7, "FJ82H-XT6CR-J8D7P-XQJJ2-GPDD4"),
    "54a09a0d-d57b-4c10-8b69-a842d6590ad5": (WIN7, "MRPKT-YTG23-K7D7T-X2JMM-QY7MG"),
    "5a041529-fef8-4d07-b06f-b59b573b32d2": (WIN7, "W82YF-2Q76Y-63HXB-FGJG9-GF7QX"),
    "ae2ee509-1b34-41c0-acb7-6d4650168915": (WIN7, "33PXH-7Y6KF-2VJC9-XBBR8-HVTHH"),
    "1cb6d605-11b3-4e14-bb30-da91c8e3983a": (WIN7, "YDRBP-3D83W-TY26F-D46B2-XCKRJ"),
    "46bbed08-9c7b-48fc-a614-95250573f4ea": (WIN7, "C29WB-22CC8-VJ326-GHFJW-H9DH4"),
    "4f3d1606-3fea-4c01-be3c-8d671c401e3b": (VISTA, "YFKBB-PQJJV-G996G-VWGXY-2V3X8"),
    "2c682dc2-8b68-4f63-a165-ae291d4cf138": (VISTA, "HMBQG-8H2RH-C77VX-27R82-VMQBT"),
    "cfd8ff08-c0d7-452b-9f60-ef5c70c32094": (VISTA, "VKK3X-68KWM-X2YGT-QR4M6-4BWMV"),
    "d4f54950-26f2-4fb4-ba21-ffab16afcade": (VISTA, "VTC42-BM838-43QHV-84HX6-XJXKV"),
    "a78b8bd9-8017-4df5-b86a-09f756affa7c": (R2_A, "6TPJF-RBVHG-WBW2R-86QPH-6RTM4"),
    "cda18cf3-c196-46ad-b289-60c072869994": (R2_A, "FKJQ8-TMCVP-FRMR7-4WR42-3JCD7"),
    "ddfa9f7c-f09e-40b9-8c1a-be877a9a7f4b": (WS08_A, "WYR28-R7TFJ-3X2YQ-YCY4H-M249D"),
    "7afb1156-2c1d-40fc-b260-aab7442b62fe": (WS08_A, "RCTX3-KWVHP-BR6TB-RB6DM-6X7HP"),
    "68531fb9-5511-4989-97be-d11a0f55633f": (R2_B, "YC6KT-GKW9T-YTKYR-T4X34-R7VHC"),
    "620e2b3d-09e7-42fd-802a-17a13652fe7a": (R2_B, "489J6-VHDMP-X63PK-3K798-CPX3Y"),
    "ad2542d4-9154-4c6d-8a44-30f11ee96989": (WS08_B, "TM24T-X9RMF-VWXK6-X8JC9-BFGM2"),
    "2401e3d0-c50a-4b58-87b2-7e794b7d2607": (WS08_B, "W7VD6-7JFBR-RX26B-YKQ3Y-6FFFJ"),
    "c1af4d90-d1bc-44ca-85d4-003ba33db3b9": (WS08_B, "YQGMW-MPWTJ-34KDK-48M3W-X4Q6V"),
    "8198490a-add0-47b2-b3ba-316b12d647b4": (WS08_B, "39BXF-X8Q23-P2WWT-38T2F-G3FPG"),
    "7482e61b-c589-4b7f-8ecc-46d455ac3b87": (R2_C, "74YFP-3QFB3-KQT8W-PMXWJ-7M648"),
    "8a26851c-1c7e-48d3-a687-fbca9b9ac16b": (R2_C, "GT63C-RJFQ3-4GMB6-BRFB9-CB83V"),
    "68b6e220-cf09-466b-92d3-45cd964b9509": (WS08_C, "7M67G-PC374-GR742-YH8V4-TCBY3"),
    "fd09ef77-5647-4eff-809c-af2b64659a45": (WS08_C, "22XQ2-VRXRG-P8D42-K34TD-G3QQC"),
    "01ef176b-3e0d-422a-b4f8-4ea880035e8f": (WS08_C, "4DWFP-JF3DJ-B7DTH-78FJB-PDRHK"),
}
TABLE_6_SKUS = {"b92e9980-b9d5-4821-9c94-140f632f6312", "54a09a0d-d57b-4c10-8b69-a842d6590ad5",
                "ae2ee509-1b34-41c0-acb7-6d4650168915", "1cb6d605-11b3-4e14-bb30-da91c8e3983a",
                "cda18cf3-c196-46ad-b289-60c072869994", "7482e61b-c589-4b7f-8ecc-46d455ac3b87",
                "620e2b3d-09e7-42fd-802a-17a13652fe7a", "8a26851c-1c7e-48d3-a687-fbca9b9ac16b",
                "68531fb9-5511-4989-97be-d11a0f55633f", "a78b8bd9-8017-4df5-b86a-09f756affa7c"}

# PROTOCOL.md section 8: build -> (platform id, release date)
HOST_BUILDS = {6002: (55041, "2009-05-26"), 7601: (55041, "2011-02-22"), 9200: (5426, "2012-10-26"),
               9600: (6401, "2013-10-18"), 14393: (3612, "2016-08-02"), 17763: (3612, "2018-10-02"),
               20348: (3612, "2021-08-18"), 26100: (3612, "2024-11-01")}


@pytest.fixture(scope="module")
def cat() -> catalog.Catalog:
    return catalog.load()


@pytest.fixture(scope="module")
def raw() -> dict:
    return tomllib.loads(catalog.PRODUCTS_FILE.read_text(encoding="utf-8"))


# ---- data integrity -------------------------------------------------------------------------------------------

def test_applications_are_the_three_of_section_3_4(cat):
    assert set(cat.applications) == {WINDOWS, OFFICE_2010, OFFICE_2013}


def test_every_edition_takes_app_n_and_protocol_from_a_known_kms_id(cat):
    for e in cat.editions:
        kms = cat.kms_id(e.kms_id)
        assert kms is not None, e.name
        assert (e.app_id, e.n_policy, e.protocol) == (kms.application, kms.n_policy, kms.protocol), e.name


def test_sku_ids_and_names_are_unique_in_the_file(raw):
    skus = [uuid.UUID(e["sku_id"]) for e in raw["edition"]]
    names = [e["name"].casefold() for e in raw["edition"]]
    assert len(skus) == len(set(skus))
    assert len(names) == len(set(names))
    assert len({k["slug"] for k in raw["host_key"]}) == len(raw["host_key"])
    assert len({uuid.UUID(k["id"]) for k in raw["kms_id"]}) == len(raw["kms_id"])


def test_n_policy_25_for_client_os_5_for_server_os_and_office(cat):
    # section 10.1: client OS editions need 25, server OS and every Office product 5
    for kms in cat.kms_ids.values():
        server_or_office = kms.application != WINDOWS or "Server" in kms.name
        assert kms.n_policy == (5 if server_or_office else 25), kms.name


def test_protocol_version_per_generation(cat):
    # section 7: 4 for Vista/7/2008/2008 R2/Office 2010, 5 for 8/2012/Office 2013, 6 for everything later
    v4 = {VISTA, WIN7, WS08_A, WS08_B, WS08_C, R2_A, R2_B, R2_C, OFFICE10_KMS}
    v5 = {WIN8, WS2012, OFFICE13_KMS}
    for kid, kms in cat.kms_ids.items():
        assert kms.protocol == (4 if kid in v4 else 5 if kid in v5 else 6), kms.name
    assert cat.kms_id(OFFICE10_KMS).application == OFFICE_2010


def test_tiers_mark_exactly_the_table_1_generation_ids(cat):
    tiers = {kid: k.tier for kid, k in cat.kms_ids.items() if k.tier}
    assert tiers == {VISTA: "client-vl", WIN7: "client-vl", WS08_A: "server-a", R2_A: "server-a",
                     WS08_B: "server-b", R2_B: "server-b", WS08_C: "server-c", R2_C: "server-c"}


def test_editions_of_section_11_3(cat):
    for sku, (kms_id, gvlk) in TABLE_11_3.items():
        e = cat.edition_by_sku(U(sku))
        assert e is not None, sku
        assert (e.kms_id, e.gvlk, e.app_id) == (kms_id, gvlk, WINDOWS), e.name
        assert "table1" in e.tables, e.name
    assert {str(e.sku_id) for e in cat.table1()} == set(TABLE_11_3)
    assert {str(e.sku_id) for e in cat.table6()} == TABLE_6_SKUS


def test_known_guids_from_the_brief(cat):
    assert cat.edition(U("458e1bec-837a-45f6-b9d5-925ed5d299de")).kms_id == WIN8
    assert cat.edition(U("34e1ae55-27f8-4950-8877-7a03be5fb181")).kms_id == U("8449b1fb-f0ea-497a-99ab-66ca96e9a0f5")
    assert cat.edition("Windows 8 Enterprise").sku_id == U("458e1bec-837a-45f6-b9d5-925ed5d299de")


def test_hpc_gvlk_conflict_is_recorded_with_both_values(raw, cat):
    row = next(e for e in raw["edition"] if e["sku_id"] == "cda18cf3-c196-46ad-b289-60c072869994")
    assert (row["gvlk"], row["gvlk_alt"]) == ("FKJQ8-TMCVP-FRMR7-4WR42-3JCD7", "TT8MH-CG224-D3D7Q-498W2-9QCTX")
    assert row["note"]
    assert cat.edition_by_gvlk(row["gvlk"]) is cat.edition_by_gvlk(row["gvlk_alt"].lower())


def test_alternative_kms_ids_exist(raw, cat):
    for row in raw["edition"]:
        if "kms_id_alt" in row:
            assert U(row["kms_id_alt"]) in cat.kms_ids and row.get("note"), row["name"]


def test_every_kms_id_has_a_host_key_and_the_default_keys_cover_all(cat):
    for kid, kms in cat.kms_ids.items():
        assert cat.keys_activating(kid), kms.name
    covered = frozenset().union(*(k.activates for k in cat.default_host_keys()))
    assert covered == set(cat.kms_ids)


def test_every_host_key_activates_something_and_lab_keys_are_never_default(cat):
    for key in cat.host_keys:
        assert key.activates, key.slug  # an empty set would be a key no request can use
    assert not [k.slug for k in cat.host_keys if k.default and "lab" in k.name.casefold()]


def test_table2_keys_nest_and_are_downward_closed(cat):
    keys = cat.table2()
    assert [k.tier for k in keys] == list(TIERS)
    for lower, upper in zip(keys, keys[1:]):
        assert lower.activates < upper.activates, (lower.slug, upper.slug)
    for key in keys:
        assert key.activates == TABLE2_SETS[key.tier], key.slug
        rank = TIERS.index(key.tier)
        tiered = {kid for kid, k in cat.kms_ids.items() if k.tier and TIERS.index(k.tier) <= rank}
        assert key.activates == tiered, key.slug  # a group key activates its group and every group below
        assert cat.host_key(key.tier) is key


def test_vista_2008_generation_keys_do_not_activate_windows_7_generation(cat):
    newer = {WIN7, R2_A, R2_B, R2_C}
    for slug in ("vista-client-vl-1", "vista-client-vl-2", "ws2008-a", "ws2008-b", "ws2008-c"):
        assert not cat.host_key(slug).activates & newer, slug


def test_table2_host_os_and_windows_7_carries_only_client_vl(cat):
    keys = {k.tier: k for k in cat.table2()}
    assert set(keys["client-vl"].host_os) == {"Windows Vista", "Windows 7", "KMS 1.2 for Windows Server 2003"}
    a, b, c = (set(keys[t].host_os) for t in ("server-a", "server-b", "server-c"))
    assert a < b < c  # "all of the above plus ..." from group B on
    assert "Windows Server 2008 R2 Datacenter" in c and "Windows Server 2008 R2 Datacenter" not in b
    carriers = [k.tier for k in cat.table2() if "windows 7" in (h.casefold() for h in k.host_os)]
    assert carriers == ["client-vl"]


def test_host_key_ranges_and_known_groups(cat):
    for k in cat.host_keys:
        assert 0 <= k.key_id_min <= k.key_id_max <= 999_999_999, k.slug
    assert (cat.host_key("windows-server-2019").epid_group, cat.host_key("office-2010-vl").epid_group) == (206, 96)
    assert (cat.host_key("ws2008r2-c").key_id_min, cat.host_key("ws2008r2-c").key_id_max) == (305_000_000, 312_119_999)


def test_host_builds_and_platform_ids_of_section_8(cat):
    assert {b.build: (b.platform_id, b.release.isoformat()) for b in cat.host_builds} == HOST_BUILDS
    assert cat.platform_ids() == {b: p for b, (p, _) in HOST_BUILDS.items()}
    assert cat.host_build(7601).platform_id == 55041
    assert cat.host_build(1) is None


def test_lcids_are_the_158_of_section_8(cat):
    assert len(cat.lcids) == 158 and {1033, 1025, 20490, 15361} <= cat.lcids
    protocol = SHARED / "PROTOCOL.md"
    if protocol.exists():  # the list as printed in the contract
        block = protocol.read_text(encoding="utf-8").split("vlmcsd's list (158 values):", 1)[1].split("```")[1]
        assert cat.lcids == {int(n) for n in block.split()}


# ---- lookups --------------------------------------------------------------------------------------------------

def test_edition_by_name_sku_alias_and_slug(cat):
    win7 = cat.edition_by_sku(U("ae2ee509-1b34-41c0-acb7-6d4650168915"))
    for key in ("Windows 7 Enterprise", "windows 7 ENTERPRISE", " Windows 7 Enterprise ", "win7-enterprise",
                "ae2ee509-1b34-41c0-acb7-6d4650168915", "{AE2EE509-1B34-41C0-ACB7-6D4650168915}",
                U("ae2ee509-1b34-41c0-acb7-6d4650168915")):
        assert cat.edition(key) is win7, key
    # the guide's and vlmcsd's names are aliases
    assert cat.edition("Windows Web Server 2008 R2").sku_id == U("a78b8bd9-8017-4df5-b86a-09f756affa7c")
    assert cat.edition("Windows 10 Enterprise") is cat.edition("Windows 10/11 Enterprise")
    assert cat.edition_by_sku(U("00000000-0000-0000-0000-000000000001")) is None


def test_unknown_edition_raises_lookup_error_with_suggestion(cat):
    with pytest.raises(LookupError, match="did you mean 'Windows 7 Enterprise'"):
        cat.edition("Windows 7 Enterprize")
    with pytest.raises(LookupError, match="no edition"):
        cat.edition("00000000-0000-0000-0000-000000000001")


def test_host_key_by_slug_or_tier(cat):
    assert cat.host_key("client-vl").slug == "win7-client-vl"
    assert cat.host_key("server-c") is cat.host_key("ws2008r2-c")
    with pytest.raises(LookupError, match="client-vl"):
        cat.host_key("server-z")
    assert cat.host_key("win7-client-vl") in cat.keys_activating(WIN7)
    assert cat.kms_id(WIN7).tier == "client-vl" and cat.tier_of(WIN7) == "client-vl"


# ---- loader ---------------------------------------------------------------------------------------------------

def test_load_is_cached_and_accepts_a_path(tmp_path):
    assert catalog.load() is catalog.load()
    copy = tmp_path / "products.toml"
    copy.write_text(catalog.PRODUCTS_FILE.read_text(encoding="utf-8"), encoding="utf-8")
    assert len(catalog.load(copy).editions) == len(catalog.load().editions)


@pytest.mark.parametrize("old, new, message", [
    ('kms_id = "7fde5219-fbfa-484a-82c9-34d1ad53e856"\ngvlk = "33PXH',
     'kms_id = "00000000-0000-0000-0000-00000000abcd"\ngvlk = "33PXH', "Windows 7 Enterprise"),
    ('sku_id = "b92e9980-b9d5-4821-9c94-140f632f6312"', 'sku_id = "ae2ee509-1b34-41c0-acb7-6d4650168915"',
     "repeats SKU id"),
    ('slug = "win7-client-vl"', 'slug = "ws2008r2-c"', "appears twice"),
    ('tier = "server-a"', 'tier = "server-q"', "server-q"),
    ('sku_id = "ae2ee509-1b34-41c0-acb7-6d4650168915"', 'sku_id = "not-a-guid"', "Windows 7 Enterprise"),
])
def test_bad_rows_are_named(tmp_path, old, new, message):
    text = catalog.PRODUCTS_FILE.read_text(encoding="utf-8")
    assert old in text
    bad = tmp_path / "products.toml"
    bad.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(message)):
        catalog.load(bad)


def test_unknown_activates_entry_is_named(tmp_path):
    text = catalog.PRODUCTS_FILE.read_text(encoding="utf-8")
    head, tail = text.split('slug = "office-2010-vl"', 1)
    tail = tail.replace('activates = [', 'activates = [\n  "00000000-0000-0000-0000-00000000beef",', 1)
    bad = tmp_path / "products.toml"
    bad.write_text(head + 'slug = "office-2010-vl"' + tail, encoding="utf-8")
    with pytest.raises(ValueError, match="office-2010-vl"):
        catalog.load(bad)


# ---- third-party captures ---------------------------------------------------------------------------------------

def _capture_requests() -> list[tuple[str, uuid.UUID, str, uuid.UUID, int]]:
    """(file, SKU id, vlmcs's edition name, KMS id, N) of every request printed in the captures' .txt decodes."""
    found = []
    field = re.compile(r"^(SKU ID|KMS ID|N count policy)[^:]*:\s*(\S+)\s*(?:\((.*)\))?\s*$")
    for txt in sorted(CAPTURES.glob("*.txt")):
        current: dict[str, tuple[str, str | None]] = {}
        for line in txt.read_text(encoding="utf-8", errors="replace").splitlines():
            m = field.match(line.strip())
            if m:
                current[m.group(1)] = (m.group(2), m.group(3))
            if len(current) == 3:
                (sku, name), (kms, _), (n, _) = current["SKU ID"], current["KMS ID"], current["N count policy"]
                found.append((txt.name, U(sku), name or "", U(kms), int(n)))
                current = {}
    return found


@pytest.mark.skipif(not CAPTURES.is_dir(), reason=f"third-party captures not found at {CAPTURES} (../shared absent)")
def test_capture_editions_exist_with_their_kms_id_and_n(cat):
    requests = _capture_requests()
    assert len({r[0] for r in requests}) == len(list(CAPTURES.glob("*.txt")))  # every decode yielded a request
    for name, sku, vlmcs_name, kms_id, n in requests:
        edition = cat.edition_by_sku(sku)
        assert edition is not None, f"{name}: SKU {sku} ({vlmcs_name}) missing from the catalog"
        assert (edition.kms_id, edition.n_policy) == (kms_id, n), f"{name}: {edition.name}"
        assert cat.edition(vlmcs_name) is edition, f"{name}: vlmcs's name {vlmcs_name!r} is not an alias"
