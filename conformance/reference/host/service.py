"""The KMS half of the reference host: a request payload in, a response payload or HRESULT out."""

from __future__ import annotations

import functools
import json
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Callable, NamedTuple, TextIO

from conformance import catalog as catalog_mod
from conformance.wire import epid, framing, hresult
from conformance.wire.messages import FILETIME_UNIX_EPOCH, KmsRequest, KmsResponse, peek_version
from conformance.wire.errors import DecodeError

from .config import HostConfig
from .state import ClientTable
from .store import Store

ACTIVATION_EVENT = 12290  # the Key Management Service log's "an activation request has been processed"


def iso_time(unix: float) -> str:
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix))
    except (OverflowError, OSError, ValueError):
        return f"{unix:.0f} s after 1970 (no date)"


class Admitted(NamedTuple):
    """A request that passed every check and waits for its count."""

    opened: framing.OpenedRequest
    key: catalog_mod.HostKey
    now: float


@dataclass(frozen=True)
class Decision:
    """What the host decided for one request: its sealed answer, or a refusal with its HRESULT."""

    payload: bytes | None  # the KMS response, or None when refused
    hresult: int
    count: int | None = None
    opened: framing.OpenedRequest | None = None
    reason: str = ""
    malformed: bool = False  # the payload could not be read at all (not merely a version the host refuses)


class Clock:
    """Wall clock plus an offset the test-control channel can advance."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class KmsService:
    def __init__(self, config: HostConfig, catalog: catalog_mod.Catalog | None = None,
                 clock: Callable[[], float] | None = None, store: Store | None = None,
                 table: ClientTable | None = None):
        self.config = config
        self.catalog = catalog or catalog_mod.load()
        self.clock = clock or Clock()
        self.store = store or Store(config.db)
        self.table = table or ClientTable(max_capacity=config.max_cache)
        self.store.load_into(self.table)
        self.host_keys = self._select_host_keys()
        self._keys = _KeyCache(self.host_keys)  # KMS id -> the host key that activates it, looked up once per id
        self.time_tolerance: float = config.time_tolerance  # seconds a request's time may be from the host clock
        self.host_build = self.catalog.host_build(config.host_build)
        if self.host_build is None:
            raise ValueError(f"host build {config.host_build} is not in the catalog's host builds")
        self.hwid = bytes.fromhex(self._stable("hwid", lambda: (config.hwid or os.urandom(8)).hex(), config.hwid))
        self.epids = {k.slug: self._stable(f"epid:{k.slug}", functools.partial(self._epid_text, k)) for k in self.host_keys}
        self.events = self._open_event_log(config.event_log)
        self.log_fields: dict[str, object] = {}  # in every event record (a host worker's number)
        self.store.put("settings", {"activation_interval": config.activation_interval,
                                    "renewal_interval": config.renewal_interval, "key_group": config.key_group,
                                    "host_build": config.host_build, "lcid": config.lcid})

    def _select_host_keys(self) -> tuple[catalog_mod.HostKey, ...]:
        if self.config.key_group is None:
            keys = self.catalog.default_host_keys()
        else:
            keys = (self.catalog.host_key(self.config.key_group),)
        host_os = self.config.host_os
        for key in keys:
            if host_os and key.host_os and host_os.casefold() not in (h.casefold() for h in key.host_os):
                raise ValueError(f"a {host_os} host cannot carry the {key.name} key (Table 2: "
                                 f"{', '.join(key.host_os)})")
        return keys

    def _stable(self, key: str, make: Callable[[], str], override: bytes | None = None) -> str:
        """A value generated once and then kept in the store, so restarts keep ePID and HwId."""
        value = self.store.get(key)
        if value is None or override is not None:
            value = make()
            self.store.put(key, value)
        return value

    def _new_epid(self, key: catalog_mod.HostKey) -> epid.Epid:
        assert self.host_build is not None  # checked in __init__
        return epid.build_epid(key, self.host_build, self.config.lcid, random.Random())

    def _epid_text(self, key: catalog_mod.HostKey) -> str:
        return str(self._new_epid(key))

    @staticmethod
    def _open_event_log(target: str | None) -> TextIO | None:
        if target is None:
            return None
        return sys.stderr if target == "-" else open(target, "a", buffering=1, encoding="utf-8")

    def log_record(self, record: dict) -> None:
        """One JSON event line (DNS publication and other host events)."""
        if self.events is not None:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock()))
            self.events.write(json.dumps({"time": stamp, **self.log_fields, **record}) + "\n")

    def event(self, opened: framing.OpenedRequest | None, result: int, count: int | None = None,
              reason: str = "") -> dict[str, object]:
        """A processed request as the Key Management Service log records it (event 12290)."""
        record: dict[str, object] = {"event": ACTIVATION_EVENT, "time": iso_time(self.clock()),
                                     "result": f"0x{result:08X}", "result_name": hresult.name(result)}
        if opened is not None:
            r = opened.request
            record.update(minimum_count=r.n_policy, workstation=r.workstation, cmid=str(r.cmid),
                          client_time=iso_time((r.request_time - FILETIME_UNIX_EPOCH) / 1e7), vm=r.vm,
                          licence_state=r.license_status, minutes_to_expiry=r.binding_expiration,
                          activation_id=str(r.sku_id), kms_id=str(r.kms_id), version=f"{r.major}.{r.minor}")
        if count is not None:
            record["count"] = count
        if reason:
            record["reason"] = reason
        return record

    def log_event(self, client: str, decision: Decision) -> None:
        """The event of a request in the event log file (--event-log), with the client's address."""
        if self.events is not None:
            record = self.event(decision.opened, decision.hresult, decision.count, decision.reason)
            self.events.write(json.dumps({**record, **self.log_fields, "client": client}) + "\n")

    def refused(self, decision: Decision) -> Decision:
        """A refusal, kept among the host database's last requests (a refusal commits on its own: they are rare)."""
        if self.store.keeps_clients and decision.opened is not None:
            self.store.note_event(self.event(decision.opened, decision.hresult, reason=decision.reason))
            self.store.commit()
        return decision

    def key_for(self, kms_id: uuid.UUID) -> catalog_mod.HostKey | None:
        return self._keys[kms_id]

    def handle(self, payload: bytes) -> Decision:
        """One request, counted and committed before the answer is sealed."""
        admitted = self.admit(payload)
        if isinstance(admitted, Decision):
            return admitted
        return self.answer(admitted, self.count_all([admitted])[0])

    # The host answers in three steps so that one event-loop turn's requests share one commit:
    # admit each (decode, verify, check), count them all in one transaction, then seal each answer.
    def admit(self, payload: bytes) -> "Decision | Admitted":
        """A verified request ready to be counted, or the refusal to send."""
        major = peek_version(payload)[0] if len(payload) >= 4 else None
        if major in framing.SUPPORTED_MAJORS and major not in self.config.protocols:
            return Decision(None, hresult.E_INVALID_DATA, reason=f"KMS version {major} is not served by this host")
        try:
            opened = framing.open_request(payload)
        except DecodeError as exc:  # UnsupportedVersion among them
            return self._unopened(payload, exc)
        return self._admit_opened(opened)

    def _unopened(self, payload: bytes, error: DecodeError) -> Decision:
        """The refusal of a payload that does not open: malformed, unless only its version is one not spoken."""
        if isinstance(error, framing.UnsupportedVersion):
            return Decision(None, hresult.E_INVALID_DATA, reason=str(error))
        return Decision(None, hresult.E_INVALID_DATA, reason=str(error), malformed=True)

    def _admit_opened(self, opened: framing.OpenedRequest) -> "Decision | Admitted":
        """The checks of an opened request: its integrity, a host key that activates it, its time."""
        if not opened.verified:
            failed = [k for k, ok in opened.checks.items() if not ok]
            return self.refused(Decision(None, hresult.E_INVALID_DATA, opened=opened,
                                        reason=f"request failed {', '.join(failed)}"))
        request = opened.request
        key = self.key_for(request.kms_id)
        if key is None:
            return self.refused(Decision(None, hresult.SL_E_VL_KEY_MANAGEMENT_SERVICE_ID_MISMATCH, opened=opened,
                                        reason=f"KMS id {request.kms_id} is not activated by this host's key(s)"))
        now = self.clock()
        request_unix = (request.request_time - FILETIME_UNIX_EPOCH) / 1e7
        if abs(request_unix - now) > self.time_tolerance:
            return self.refused(Decision(None, hresult.SL_E_VL_INVALID_TIMESTAMP, opened=opened,
                                        reason=f"request time is {request_unix - now:+.0f} s from the host clock"))
        return Admitted(opened, key, now)

    def count_all(self, admitted: list[Admitted]) -> list[int]:
        """Record every admitted request in the client table, in order, and commit them in one transaction."""
        store = self.store
        store.begin(self.table)  # with host workers: the cross-process lock, and the others' records
        try:
            counts = [self._count(a.opened.request, a.now) for a in admitted]
            if store.keeps_clients:  # only a database keeps events: building one is ~8 us of a ~46 us request
                for a, count in zip(admitted, counts):
                    store.note_event(self.event(a.opened, hresult.S_OK, count))
            store.commit()
        except BaseException:
            store.rollback(self.table)  # the table again as committed
            raise
        return counts

    def answer(self, admitted: Admitted, count: int) -> Decision:
        opened = admitted.opened
        request = opened.request
        response = KmsResponse(self.epids[admitted.key.slug], request.cmid, request.request_time, count,
                               self.config.activation_interval, self.config.renewal_interval,
                               request.major, request.minor)
        return Decision(framing.seal_response(response, opened, hwid=self.hwid), hresult.S_OK, count, opened)

    def _count(self, request: KmsRequest, now: float) -> int:
        app_id, cmid, n_policy = request.app_id, request.cmid, request.n_policy
        recorded = self.table.record(app_id, cmid, n_policy, now)
        self.store.note(app_id, cmid, now, self.table.capacity(app_id), recorded, n_policy)
        return recorded.count

    # --- administration (host-status) and the test-control channel ---
    def status(self) -> dict[str, object]:
        now = self.clock()
        apps = {str(app): {"count": self.table.count(app, now), "cache_size": self.table.capacity(app)}
                for app in self.table.apps}
        windows = apps.get(str(catalog_mod.WINDOWS_APP_ID), {"count": 0, "cache_size": 0})
        return {
            "count": windows["count"],
            "cache_size": windows["cache_size"],
            "applications": apps,
            "key_group": self.config.key_group or "default",
            "host_keys": [k.slug for k in self.host_keys],
            "epid": self.epids[self.host_keys[0].slug],
            "epids": dict(self.epids),
            "hwid": self.hwid.hex().upper(),
            "activation_interval": self.config.activation_interval,
            "renewal_interval": self.config.renewal_interval,
        }

    def reset(self) -> None:
        self.table.reset()
        self.store.reset_clients()


class _KeyCache(dict):
    """KMS id -> the first host key that activates it (or None), filled on first use."""

    def __init__(self, host_keys: tuple[catalog_mod.HostKey, ...]):
        super().__init__()
        self.host_keys = host_keys

    def __missing__(self, kms_id: uuid.UUID) -> catalog_mod.HostKey | None:
        key = next((k for k in self.host_keys if kms_id in k.activates), None)
        if len(self) < 4096:  # KMS ids come from the catalog; a flood of made-up ones must not grow this
            self[kms_id] = key
        return key
