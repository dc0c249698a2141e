"""Reference host settings, mirroring what slmgr.vbs sets on a genuine host."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PORT = 1688
DEFAULT_ACTIVATION_INTERVAL = 120  # minutes (/sai)
DEFAULT_RENEWAL_INTERVAL = 10080  # minutes (/sri)
INTERVAL_RANGE = (15, 43200)  # 15 minutes .. 30 days
TIME_TOLERANCE_SECONDS = 4 * 3600
NEWEST_HOST_BUILD = 26100

@dataclass
class HostConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    activation_interval: int = DEFAULT_ACTIVATION_INTERVAL
    renewal_interval: int = DEFAULT_RENEWAL_INTERVAL
    key_group: str | None = None  # None = the catalog's default (newest) host keys
    host_os: str | None = None  # e.g. "Windows 7": must be able to carry the key (Table 2)
    host_build: int = NEWEST_HOST_BUILD
    protocols: tuple[int, ...] = (4, 5, 6)  # KMS versions served: the guide's 2008 R2 host answered 4 only
    lcid: int = 1033
    hwid: bytes | None = None  # None = random once, then persisted
    db: str = ":memory:"
    ndr64: bool | None = None  # None = as the host OS would (builds 9200 and later)
    time_tolerance: int = TIME_TOLERANCE_SECONDS
    idle_timeout: float = 30.0
    bind_timeout: float = 5.0  # a new connection must get a context accepted within this (then idle_timeout)
    read_timeout: float = 10.0  # a started PDU must complete within this
    max_connections: int = 2048  # beyond it, a new connection closes the least recently active one
    backlog: int = 1024  # listen() queue, for bursts of new connections
    max_pdu: int = 5840
    max_cache: int = 50  # 2 x 25; a load test may let it count more distinct clients (--max-cache)
    control: bool = False  # the loopback test-control channel (advance clock, reset)
    event_log: str | None = None  # path, or "-" for stderr
    low_priority: bool = False
    dns_publish: bool = False
    dns_server: tuple[str, int] | None = None  # where dynamic updates go
    dns_publish_list: tuple[str, ...] = ()  # "domain[,priority[,weight]]" (DnsDomainPublishList)
    dns_hostname: str = "kms"  # this host's label in each published domain
    dns_unpublish_on_exit: bool = False

    def __post_init__(self) -> None:
        for name in ("activation_interval", "renewal_interval"):
            value = getattr(self, name)
            if not INTERVAL_RANGE[0] <= value <= INTERVAL_RANGE[1]:
                raise ValueError(f"{name} {value} outside {INTERVAL_RANGE[0]}..{INTERVAL_RANGE[1]} minutes")

    @property
    def uses_ndr64(self) -> bool:
        return self.host_build >= 9200 if self.ndr64 is None else self.ndr64
