"""Reference host settings, mirroring what slmgr.vbs sets on a genuine host."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_PORT = 1688
DEFAULT_ACTIVATION_INTERVAL = 120  # minutes (/sai)
DEFAULT_RENEWAL_INTERVAL = 10080  # minutes (/sri)
INTERVAL_RANGE = (15, 43200)  # 15 minutes .. 30 days
TIME_TOLERANCE_SECONDS = 4 * 3600
NEWEST_HOST_BUILD = 26100

# Deliberate deviations, for proving that the suite's checks can fail. Never on by default.
QUIRKS = {
    "count-repeats": "count a repeated CMID again",
    "no-expiry": "never age client entries out",
    "no-renewal-replace": "a renewal keeps the entry's original time",
    "fixed-count": "always report the configured fixed_count",
    "shrink-cache": "cache capacity follows the latest N instead of the highest",
    "ignore-key-group": "activate every KMS id whatever the host key",
    "ignore-time": "accept any request time",
    "bad-hash": "corrupt the V5/V6 hash / V4 MAC",
    "bad-hmac": "corrupt the V6 HMAC",
    "random-epid": "a new ePID on every request",
    "random-hwid": "a new HwId on every request",
    "wrong-version": "answer with version 6.0 whatever was asked",
    "wrong-cmid": "echo a different CMID",
    "wrong-time": "echo a different request time",
    "no-call-id-echo": "answer every PDU with call_id 2",
    "ignore-opnum": "treat any opnum as RequestActivation",
    "accept-foreign-interface": "accept binds for any interface",
    "no-mpx-mirror": "always set PFC_CONC_MPX in bind_ack",
    "accept-bad-version": "answer unsupported versions as if they were 6.0",
    "close-after-response": "close the connection after each response",
    "count-per-kms-id": "one count per KMS counted id instead of one per application (client and server apart)",
    "cache-size-50": "cache capacity 50 whatever N the clients send",
    "no-cache-growth": "cache capacity fixed by the first N seen, never grown",
    "bad-epid": "an ePID with an invalid LCID (9999)",
    "pad-response": "append 512 bytes to every KMS response payload",
    "reuse-request-iv": "V6: answer with the request's IV",
    "crash-on-malformed": "stop serving after the first malformed input",
    "non-cumulative-groups": "a host key activates only its own tier, not the tiers below (breaks Table 2)",
    "reject-ndr32": "never accept the NDR32 transfer syntax",
    "accept-all-syntaxes": "accept every offered KMS transfer syntax, not exactly one",
    "zero-assoc-group": "answer binds with assoc_group 0",
    "no-alter-context": "close the connection on alter_context",
    "process-unbound-context": "serve requests on contexts never accepted (as NDR32)",
    "bad-alloc-hint": "alloc_hint 0 in responses",
    "require-mpx": "close binds that do not set PFC_CONC_MPX",
}


@dataclass
class HostConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    activation_interval: int = DEFAULT_ACTIVATION_INTERVAL
    renewal_interval: int = DEFAULT_RENEWAL_INTERVAL
    key_group: str | None = None  # None = the catalog's default (newest) host keys
    host_os: str | None = None  # e.g. "Windows 7": must be able to carry the key (Table 2)
    host_build: int = NEWEST_HOST_BUILD
    lcid: int = 1033
    hwid: bytes | None = None  # None = random once, then persisted
    db: str = ":memory:"
    ndr64: bool | None = None  # None = as the host OS would (builds 9200 and later)
    time_tolerance: int = TIME_TOLERANCE_SECONDS
    idle_timeout: float = 30.0
    read_timeout: float = 10.0  # a started PDU must complete within this
    max_connections: int = 2048
    backlog: int = 1024  # listen() queue, for bursts of new connections
    max_pdu: int = 5840
    fixed_count: int | None = None
    control: bool = False  # the loopback test-control channel (advance clock, reset)
    event_log: str | None = None  # path, or "-" for stderr
    low_priority: bool = False
    dns_publish: bool = False
    dns_server: tuple[str, int] | None = None  # where dynamic updates go
    dns_publish_list: tuple[str, ...] = ()  # "domain[,priority[,weight]]" (DnsDomainPublishList)
    dns_hostname: str = "kms"  # this host's label in each published domain
    dns_unpublish_on_exit: bool = False
    quirks: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        unknown = set(self.quirks) - set(QUIRKS)
        if unknown:
            raise ValueError(f"unknown quirks: {', '.join(sorted(unknown))}")
        for name in ("activation_interval", "renewal_interval"):
            value = getattr(self, name)
            if not INTERVAL_RANGE[0] <= value <= INTERVAL_RANGE[1]:
                raise ValueError(f"{name} {value} outside {INTERVAL_RANGE[0]}..{INTERVAL_RANGE[1]} minutes")

    @property
    def uses_ndr64(self) -> bool:
        return self.host_build >= 9200 if self.ndr64 is None else self.ndr64
