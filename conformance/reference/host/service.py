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
from conformance.wire import crypto, epid, framing, hresult, layout
from conformance.wire.messages import FILETIME_UNIX_EPOCH, KmsRequest, KmsResponse, peek_version
from conformance.wire.errors import DecodeError

from .config import HostConfig
from conformance.faults.quirks import Quirk
from .state import ClientTable
from .store import Store

OTHER_KEY = "windows-server-2019"
ACTIVATION_EVENT = 12290  # the Key Management Service log's "an activation request has been processed"


def iso_time(unix: float) -> str:
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix))
    except (OverflowError, OSError, ValueError):
        return f"{unix:.0f} s after 1970 (no date)"  # the key the epid-names-other-key quirk's ePIDs name


class Admitted(NamedTuple):
    """A request that passed every check and waits for its count."""

    opened: framing.OpenedRequest
    key: catalog_mod.HostKey
    now: float


@dataclass(frozen=True)
class Outcome:
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
                 clock: Callable[[], float] | None = None, store: Store | None = None):
        self.config = config
        self.catalog = catalog or catalog_mod.load()
        self.clock = clock or Clock()
        self.store = store or Store(config.db)
        quirks = config.quirks
        self.table = ClientTable(max_capacity=config.max_cache, expire=Quirk.NO_EXPIRY not in quirks,
                                 renew_replaces=Quirk.NO_RENEWAL_REPLACE not in quirks)
        self.store.load_into(self.table)
        self.host_keys = self._select_host_keys()
        # KMS id -> the host key that activates it, looked up once per id (None under the quirk that needs tiers)
        self._keys: _KeyCache | None = None
        if Quirk.NON_CUMULATIVE_GROUPS not in quirks:
            self._keys = _KeyCache(self.host_keys)
        self.host_build = self.catalog.host_build(config.host_build)
        if self.host_build is None:
            raise ValueError(f"host build {config.host_build} is not in the catalog's host builds")
        self.hwid = bytes.fromhex(self._stable("hwid", lambda: (config.hwid or os.urandom(8)).hex(), config.hwid))
        self.epids = {k.slug: self._stable(f"epid:{k.slug}", functools.partial(self._epid_text, k)) for k in self.host_keys}
        self.events = self._open_event_log(config.event_log)
        self.log_fields: dict[str, object] = {}  # in every event record (a host worker's number)
        self.last_answer: bytes | None = None  # the answer-short-payload quirk repeats it
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

    def log_event(self, client: str, outcome: Outcome) -> None:
        """The event of a request in the event log file (--event-log), with the client's address."""
        if self.events is not None:
            record = self.event(outcome.opened, outcome.hresult, outcome.count, outcome.reason)
            self.events.write(json.dumps({**record, **self.log_fields, "client": client}) + "\n")

    def refused(self, outcome: Outcome) -> Outcome:
        """A refusal, kept among the host database's last requests (a refusal commits on its own: they are rare)."""
        if self.store.keeps_clients and outcome.opened is not None:
            self.store.note_event(self.event(outcome.opened, outcome.hresult, reason=outcome.reason))
            self.store.commit()
        return outcome

    def key_for(self, kms_id: uuid.UUID) -> catalog_mod.HostKey | None:
        if self._keys is not None:
            return self._keys[kms_id]
        for key in self.host_keys:
            if Quirk.NON_CUMULATIVE_GROUPS in self.config.quirks and key.tier is not None:
                if self.catalog.tier_of(kms_id) != key.tier:
                    continue
            if kms_id in key.activates:
                return key
        return None

    def _activates_windows(self, key: catalog_mod.HostKey) -> bool:
        return any(self.catalog.kms_ids[k].application == catalog_mod.WINDOWS_APP_ID for k in key.activates)

    def handle(self, payload: bytes) -> Outcome:
        """One request, counted and committed before the answer is sealed."""
        admitted = self.admit(payload)
        if isinstance(admitted, Outcome):
            return admitted
        return self.answer(admitted, self.count_all([admitted])[0])

    # The host answers in three steps so that one event-loop turn's requests share one commit:
    # admit each (decode, verify, check), count them all in one transaction, then seal each answer.
    def admit(self, payload: bytes) -> "Outcome | Admitted":
        """A verified request ready to be counted, or the refusal to send."""
        quirks = self.config.quirks
        major = peek_version(payload)[0] if len(payload) >= 4 else None
        if major in framing.SUPPORTED_MAJORS and major not in self.config.protocols:
            return Outcome(None, hresult.E_INVALID_DATA, reason=f"KMS version {major} is not served by this host")
        try:
            opened = framing.open_request(payload, allow_minor=bool(quirks) and Quirk.ACCEPT_BAD_VERSION in quirks)
        except framing.UnsupportedVersion as exc:
            if not quirks or Quirk.ACCEPT_BAD_VERSION not in quirks:
                return Outcome(None, hresult.E_INVALID_DATA, reason=str(exc))
            patched = bytes(payload[:2]) + b"\x06\x00" + bytes(payload[4:])
            return self.admit(patched)
        except DecodeError as exc:
            if Quirk.ANSWER_SHORT_PAYLOAD in quirks and self.last_answer is not None:
                return Outcome(self.last_answer, hresult.S_OK, reason=f"answered anyway: {exc}", malformed=True)
            return Outcome(None, hresult.E_INVALID_DATA, reason=str(exc), malformed=True)
        if not opened.verified:
            failed = [k for k, ok in opened.checks.items() if not ok]
            return self.refused(Outcome(None, hresult.E_INVALID_DATA, opened=opened,
                                        reason=f"request failed {', '.join(failed)}"))
        request = opened.request
        key = self.key_for(request.kms_id)
        if key is None and quirks and Quirk.IGNORE_KEY_GROUP in quirks:
            key = self.host_keys[0]
        if key is None:
            return self.refused(Outcome(None, hresult.SL_E_VL_KEY_MANAGEMENT_SERVICE_ID_MISMATCH, opened=opened,
                                        reason=f"KMS id {request.kms_id} is not activated by this host's key(s)"))
        now = self.clock()
        request_unix = (request.request_time - FILETIME_UNIX_EPOCH) / 1e7
        if abs(request_unix - now) > self.config.time_tolerance and not (quirks and Quirk.IGNORE_TIME in quirks):
            return self.refused(Outcome(None, hresult.SL_E_VL_INVALID_TIMESTAMP, opened=opened,
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

    def answer(self, admitted: Admitted, count: int) -> Outcome:
        opened = admitted.opened
        request = opened.request
        quirks = self.config.quirks
        if not quirks:
            response = KmsResponse(self.epids[admitted.key.slug], request.cmid, request.request_time, count,
                                   self.config.activation_interval, self.config.renewal_interval,
                                   request.major, request.minor)
            return Outcome(framing.seal_response(response, opened, hwid=self.hwid), hresult.S_OK, count, opened)
        response = KmsResponse(
            epid=self._epid_for(admitted.key),
            cmid=uuid.uuid4() if Quirk.WRONG_CMID in quirks else request.cmid,
            request_time=request.request_time + (10**7 if Quirk.WRONG_TIME in quirks else 0),
            count=count,
            activation_interval=self.config.activation_interval,
            renewal_interval=self.config.renewal_interval,
            major=6 if Quirk.WRONG_VERSION in quirks else request.major,
            minor=request.minor,
        )
        hwid = os.urandom(8) if Quirk.RANDOM_HWID in quirks else self.hwid
        block = crypto.V6_AES.decrypt_block(opened.iv) if Quirk.REUSE_REQUEST_IV in quirks and opened.major == 6 else None
        sealed = framing.seal_response(response, opened, hwid=hwid, response_block=block)
        if Quirk.PAD_RESPONSE in quirks:
            sealed += bytes(512)
        self.last_answer = self._corrupt(sealed, opened.major)
        return Outcome(self.last_answer, hresult.S_OK, count, opened)

    def _epid_for(self, key: catalog_mod.HostKey) -> str:
        quirks = self.config.quirks
        if Quirk.EPID_NAMES_OTHER_KEY in quirks and self._activates_windows(key):
            # as vlmcsd does: a Server 2019 key's ePID, whatever the key that activates
            return self._stable("epid:other-key", lambda: str(self._new_epid(self.catalog.host_key(OTHER_KEY))))
        if Quirk.RANDOM_EPID in quirks:
            return str(self._new_epid(key))
        if Quirk.BAD_EPID in quirks:
            return self.epids[key.slug].replace(f"-{self.config.lcid}-", "-9999-")
        return self.epids[key.slug]

    def _count(self, request: KmsRequest, now: float) -> int:
        quirks = self.config.quirks
        cmid, n_policy = request.cmid, request.n_policy
        app_id = request.kms_id if quirks and Quirk.COUNT_PER_KMS_ID in quirks else request.app_id
        if quirks:
            if Quirk.FIXED_COUNT in quirks:
                return self.config.fixed_count if self.config.fixed_count is not None else 2 * n_policy
            if Quirk.COUNT_REPEATS in quirks:
                cmid = uuid.uuid4()
            if Quirk.SHRINK_CACHE in quirks and app_id in self.table.apps:
                self.table.apps[app_id].capacity = 2 * n_policy
            if Quirk.CACHE_SIZE_50 in quirks:
                n_policy = 25  # the table sizes itself from 2 x N
            if Quirk.NO_CACHE_GROWTH in quirks and app_id in self.table.apps:
                n_policy = self.table.apps[app_id].capacity // 2  # the first N seen, for good
        recorded = self.table.record(app_id, cmid, n_policy, now)
        self.store.note(app_id, cmid, now, self.table.capacity(app_id), recorded, n_policy)
        return recorded.count

    def _corrupt(self, sealed: bytes, major: int) -> bytes:
        """Apply the integrity quirks after sealing; V5/V6 re-encrypt so only the named field is wrong."""
        quirks = self.config.quirks
        if not quirks & {Quirk.BAD_HASH, Quirk.BAD_HMAC}:
            return sealed
        if major == 4:
            return sealed[:-1] + bytes([sealed[-1] ^ 1]) if Quirk.BAD_HASH in quirks else sealed
        cipher = crypto.V5_AES if major == 5 else crypto.V6_AES
        iv = sealed[layout.IV]
        plain = bytearray(crypto.pkcs7_unpad(cipher.cbc_decrypt(iv, sealed[layout.IV.stop:])) or b"")
        trailer = len(plain) - layout.RESPONSE_TRAILER.size(major)  # where the trailer starts
        if Quirk.BAD_HASH in quirks:
            plain[trailer + layout.RESPONSE_TRAILER.slice("hash", major).stop - 1] ^= 1
        if Quirk.BAD_HMAC in quirks and major == 6:
            plain[trailer + layout.RESPONSE_TRAILER.slice("hmac", major).stop - 1] ^= 1
        return sealed[:layout.IV.stop] + cipher.cbc_encrypt(iv, crypto.pkcs7_pad(bytes(plain)))

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
