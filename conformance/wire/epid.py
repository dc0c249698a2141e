"""Extended PID: build, parse and validate (PROTOCOL.md 8)."""

from __future__ import annotations

import calendar
import datetime as dt
import random
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import DecodeError

if TYPE_CHECKING:
    from conformance.catalog import Catalog, HostBuild, HostKey

EPID_PATTERN = re.compile(
    r"^(?P<platform>\d{5})-(?P<group>\d{5})-(?P<key_hi>\d{3})-(?P<key_lo>\d{6})-(?P<channel>\d{2})"
    r"-(?P<lcid>\d{4,5})-(?P<build>\d{4,5})\.0000-(?P<day>\d{3})(?P<year>\d{4})$"
)
VOLUME_CHANNEL = 3


@dataclass(frozen=True)
class Epid:
    platform_id: int
    group: int
    key_id: int
    lcid: int
    build: int
    day: int  # day of year, 1-based on genuine hosts
    year: int
    channel: int = VOLUME_CHANNEL

    def __str__(self) -> str:
        return (
            f"{self.platform_id:05d}-{self.group:05d}-{self.key_id // 1_000_000:03d}-{self.key_id % 1_000_000:06d}"
            f"-{self.channel:02d}-{self.lcid}-{self.build}.0000-{self.day:03d}{self.year:04d}"
        )

    @classmethod
    def parse(cls, text: str) -> "Epid":
        match = EPID_PATTERN.match(text)
        if not match:
            raise DecodeError(f"ePID {text!r} does not match PPPPP-GGGGG-KKK-KKKKKK-03-LLLL-BBBB.0000-DDDYYYY")
        g = match.group
        return cls(
            platform_id=int(g("platform")),
            group=int(g("group")),
            key_id=int(g("key_hi")) * 1_000_000 + int(g("key_lo")),
            lcid=int(g("lcid")),
            build=int(g("build")),
            day=int(g("day")),
            year=int(g("year")),
            channel=int(g("channel")),
        )

    def activation_date(self) -> dt.date | None:
        """The date the day/year fields name (1-based day), or None when they name no date."""
        if not 1 <= self.day <= (366 if calendar.isleap(self.year) else 365) or self.year < 1601:
            return None  # day 366 of a common year is no date (and of 9999 not even a datetime.date)
        return dt.date(self.year, 1, 1) + dt.timedelta(days=self.day - 1)


def build_epid(host_key: "HostKey", host_build: "HostBuild", lcid: int, rng: random.Random,
               today: dt.date | None = None) -> Epid:
    """A well-formed ePID for a host carrying `host_key` on `host_build`, activated on a random past date."""
    today = today or dt.date.today()
    earliest = max(host_build.release, host_key.release or host_build.release)
    span = max((today - earliest).days, 0)
    activated = earliest + dt.timedelta(days=rng.randint(0, span))
    return Epid(
        platform_id=host_build.platform_id,
        group=host_key.epid_group,
        key_id=rng.randint(host_key.key_id_min, host_key.key_id_max),
        lcid=lcid,
        build=host_build.build,
        day=activated.timetuple().tm_yday,
        year=activated.year,
    )


def keys_named(text: str, catalog: "Catalog") -> list["HostKey"]:
    """The catalog's host keys an ePID can name: its group id, and its key id within the key's range."""
    try:
        epid = Epid.parse(text)
    except DecodeError:
        return []
    return [k for k in catalog.host_keys
            if k.epid_group == epid.group and k.key_id_min <= epid.key_id <= k.key_id_max]


def validate(text: str, catalog: "Catalog", kms_id: uuid.UUID | None = None,
             today: dt.date | None = None) -> list[str]:
    """Problems found in an ePID (empty when it is well-formed and consistent), PROTOCOL.md 8 steps 1-6."""
    try:
        epid = Epid.parse(text)
    except DecodeError as exc:
        return [str(exc)]
    problems = []
    if epid.channel != VOLUME_CHANNEL:
        problems.append(f"licence channel {epid.channel:02d} is not 03 (volume)")
    build = catalog.host_build(epid.build)
    if build is None:
        problems.append(f"host build {epid.build} is not a known KMS host build")
    elif build.platform_id != epid.platform_id:
        problems.append(f"platform id {epid.platform_id} does not match build {epid.build} (expected {build.platform_id})")
    keys = [k for k in catalog.host_keys if k.epid_group == epid.group]
    if not keys:
        problems.append(f"group id {epid.group} is not a known host-key (CSVLK) group")
    else:
        in_range = [k for k in keys if k.key_id_min <= epid.key_id <= k.key_id_max]
        if not in_range:
            problems.append(f"key id {epid.key_id} lies outside every range of group {epid.group}")
        elif kms_id is not None and not any(kms_id in k.activates for k in in_range):
            problems.append(f"no host key of group {epid.group} with key id {epid.key_id} activates KMS id {kms_id}")
    if epid.lcid not in catalog.lcids:
        problems.append(f"LCID {epid.lcid} is not a valid Windows LCID")
    date = epid.activation_date()
    if date is None:
        problems.append(f"day {epid.day:03d} of {epid.year} is not a date (day must be 001..366 and exist that year)")
    else:
        today = today or dt.date.today()
        if date > today + dt.timedelta(days=1):
            problems.append(f"activation date {date} lies in the future")
        if build is not None and date < build.release:
            problems.append(f"activation date {date} precedes the release of build {build.build} ({build.release})")
    return problems
